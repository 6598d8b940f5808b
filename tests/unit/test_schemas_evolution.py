"""Evolution: forward compatibility, producer strictness, upcasting, ids of derived records."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from turnlog.schemas import (
    Catalog,
    CloudEvent,
    ConversationItemAdded,
    EventPayload,
    InvalidPayloadError,
    SessionClosed,
    UserTranscribed,
    agent_source,
    decode,
    derived_event_id,
    encode,
    new_event,
    stream_source,
)
from turnlog.schemas.catalog import CATALOG

pytestmark = pytest.mark.unit

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _event(payload: EventPayload, **overrides: Any) -> CloudEvent[Any]:
    args: dict[str, Any] = {
        "session_id": "sess_1",
        "sequence": 1,
        "source": agent_source("tutor", "AW_worker1"),
        "subject": "room-1",
    } | overrides
    return new_event(payload, **args)


# -- forward compatibility and producer strictness


def test_unknown_fields_from_a_newer_minor_are_ignored() -> None:
    raw: dict[str, Any] = json.loads(encode(_event(SessionClosed(reason="error"))))
    raw["type"] = "turnlog.conversation.item_added.v1"
    raw["data"] = {
        "item_id": "item_1",
        "role": "user",
        "text": "hello",
        "added_in_v1_3": {"anything": 1},
        "metrics": {"e2e_latency": 0.5, "future_metric": 2},
    }
    raw["traceparent"] = "00-abc-def-01"  # an unknown CloudEvents extension
    event = decode(json.dumps(raw).encode())
    assert isinstance(event.data, ConversationItemAdded)
    assert event.data.metrics.e2e_latency == 0.5
    assert "added_in_v1_3" not in json.loads(encode(event))["data"]


def test_producers_cannot_misspell_a_field() -> None:
    with pytest.raises(ValidationError, match="transcrpt"):
        UserTranscribed.model_validate({"transcrpt": "hi", "transcript": "hi", "is_final": True})


def test_payloads_and_envelopes_are_frozen() -> None:
    event = _event(UserTranscribed(transcript="hi", is_final=True))
    with pytest.raises(ValidationError, match="frozen"):
        event.data.transcript = "changed"
    with pytest.raises(ValidationError, match="frozen"):
        event.sequence = 2  # type: ignore[misc]


def test_floats_must_be_finite() -> None:
    with pytest.raises(ValidationError, match="finite"):
        UserTranscribed(transcript="hi", is_final=True, confidence=float("nan"))


# -- upcasting


class _NoteV1(EventPayload):
    """Test-only: a note, first version."""

    TYPE: ClassVar[str] = "turnlog.test.note.v1"
    text: str
    """The note."""


class _NoteV2(EventPayload):
    """Test-only: the note split into title and body."""

    TYPE: ClassVar[str] = "turnlog.test.note.v2"
    title: str
    """First line."""
    body: str
    """The rest."""


class _NoteV3(EventPayload):
    """Test-only: v2 plus a language."""

    TYPE: ClassVar[str] = "turnlog.test.note.v3"
    title: str
    """First line."""
    body: str
    """The rest."""
    language: str
    """BCP-47 language."""


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    title, _, body = data["text"].partition("\n")
    return {"title": title, "body": body}


def _v1_body(catalog: Catalog) -> bytes:
    catalog.register(_NoteV1)
    body = encode(_event(_NoteV1(text="Shopping\nmilk, eggs")))
    return body


def test_upcaster_turns_a_stored_v1_into_v2() -> None:
    writer = Catalog()
    body = _v1_body(writer)
    reader = Catalog([_NoteV2])
    reader.register_upcaster("turnlog.test.note.v1", "turnlog.test.note.v2", _v1_to_v2)
    event = decode(body, catalog=reader)
    assert event.type == "turnlog.test.note.v2"
    assert event.data == _NoteV2(title="Shopping", body="milk, eggs")
    assert event.id == json.loads(body)["id"]


def test_upcasters_chain_in_order() -> None:
    body = _v1_body(Catalog())
    reader = Catalog([_NoteV3])
    reader.register_upcaster(
        "turnlog.test.note.v2", "turnlog.test.note.v3", lambda d: d | {"language": "en"}
    )
    reader.register_upcaster("turnlog.test.note.v1", "turnlog.test.note.v2", _v1_to_v2)
    event = decode(body, catalog=reader)
    assert event.data == _NoteV3(title="Shopping", body="milk, eggs", language="en")


def test_upcaster_output_is_validated() -> None:
    body = _v1_body(Catalog())
    reader = Catalog([_NoteV2])
    reader.register_upcaster("turnlog.test.note.v1", "turnlog.test.note.v2", lambda d: d)
    with pytest.raises(InvalidPayloadError, match=r"turnlog\.test\.note\.v2: data\.title"):
        decode(body, catalog=reader)


def test_upcaster_registration_is_checked() -> None:
    catalog = Catalog([_NoteV1, _NoteV2])
    with pytest.raises(ValueError, match="not in the catalog"):
        catalog.register_upcaster("turnlog.test.note.v2", "turnlog.test.note.v3", _v1_to_v2)
    catalog.register_upcaster("turnlog.test.note.v1", "turnlog.test.note.v2", _v1_to_v2)
    with pytest.raises(ValueError, match="already upcasts"):
        catalog.register_upcaster("turnlog.test.note.v1", "turnlog.test.note.v2", _v1_to_v2)
    with pytest.raises(ValueError, match="loop"):
        catalog.register_upcaster("turnlog.test.note.v2", "turnlog.test.note.v1", _v1_to_v2)
    with pytest.raises(ValueError, match="already registered"):
        catalog.register(_NoteV1)


def test_default_catalog_has_no_upcasters_yet() -> None:
    assert dict(CATALOG.upcasts) == {}


# -- sources and derived ids


def test_sources_percent_encode_their_segments() -> None:
    assert agent_source("", "AW 1") == "/agents/-/AW%201"
    assert agent_source("a/b", "w") == "/agents/a%2Fb/w"
    assert stream_source("turnlog-streams", "turns") == "/streams/turnlog-streams/turns"
    _event(SessionClosed(reason="error"), source=stream_source("app", "sessions"))


def test_derived_event_id_is_a_deterministic_uuid7() -> None:
    time = datetime(2025, 3, 1, 8, 30, 0, 123000, tzinfo=UTC)
    first = derived_event_id("sess_1/turn-3/turn.completed", time)
    assert UUID7.match(first)
    assert first == derived_event_id("sess_1/turn-3/turn.completed", time)
    assert first != derived_event_id("sess_1/turn-4/turn.completed", time)
    assert int(first.replace("-", "")[:12], 16) == int(time.timestamp() * 1000)
