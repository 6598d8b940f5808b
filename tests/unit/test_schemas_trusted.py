"""`trusted_event`, the recorder's fast envelope, is the event `new_event` would build."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from turnlog.schemas import (
    SessionClosed,
    UserTranscribed,
    agent_source,
    decode,
    encode,
    new_event,
    trusted_event,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("payload", [
    UserTranscribed(turn_id="t1", transcript='says "hi" — ünïcode', is_final=True),
    SessionClosed(reason="participant_disconnected"),
])  # fmt: skip
def test_a_trusted_event_equals_the_validated_one(payload: UserTranscribed) -> None:
    at = datetime(2026, 12, 3, 8, 15, 2, 123456, tzinfo=UTC)
    values = {"session_id": "sess-1", "sequence": 7,
              "source": agent_source("tutor", "AW_1"), "subject": 'room "7"'}  # fmt: skip

    fast = trusted_event(payload, time=at, **values)
    checked = new_event(payload, time=at, event_id=fast.id, **values)

    assert fast == checked
    assert fast.model_fields_set == checked.model_fields_set
    assert encode(fast) == encode(checked)
    assert decode(encode(fast)) == checked
    with pytest.raises(ValidationError, match="frozen"):
        fast.sequence = 8  # type: ignore[misc]  # frozen, as a validated one


def test_trusted_events_get_fresh_ids_and_the_current_time() -> None:
    payload = SessionClosed(reason="user_initiated")
    first = trusted_event(payload, session_id="s", sequence=1, source="/agents/a/b", subject="r")
    second = trusted_event(payload, session_id="s", sequence=2, source="/agents/a/b", subject="r")

    assert first.id != second.id
    assert first.time.tzinfo is UTC
    assert first.time <= second.time
