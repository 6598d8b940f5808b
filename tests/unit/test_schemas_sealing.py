"""Personal fields and sealing: what is marked, what a sealed event carries, that only
the right key opens it, and that erasure (no key) reads as the tombstone."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnlog.schemas import (
    EVENT_TYPES,
    ConversationItemAdded,
    ErrorDetail,
    ErrorOccurred,
    ParticipantJoined,
    ToolCall,
    ToolCallEndedUpdate,
    ToolExecutionUpdated,
    ToolsExecuted,
    UserStateChanged,
    UserTranscribed,
    decode,
    encode,
    new_event,
)
from turnlog.schemas.export import payload_schema
from turnlog.schemas.personal import personal_paths
from turnlog.schemas.sealing import (
    ERASED,
    DataKey,
    SealingError,
    UnwrappingKey,
    WrappingKey,
    generate_kek,
    is_sealed,
    open_value,
    seal_event,
)

pytestmark = pytest.mark.unit

SEED = 1213
print(f"test_schemas_sealing seed={SEED}")


def _event(payload, session="s-1"):  # type: ignore[no-untyped-def]
    return new_event(payload, session_id=session, sequence=1, source="/agents/a/w", subject="room")


def test_the_personal_fields_of_the_catalog() -> None:
    marked = {t: personal_paths(m) for t, m in EVENT_TYPES.items() if personal_paths(m)}
    assert marked["turnlog.user.transcribed.v1"] == ["transcript"]
    assert marked["turnlog.conversation.item_added.v1"] == ["text"]
    assert marked["turnlog.tools.executed.v1"] == ["calls[].arguments", "calls[].output"]
    assert marked["turnlog.participant.joined.v1"] == ["identity", "name"]
    assert marked["turnlog.error.v1"] == ["error.message"]
    assert "update<ToolCallProgressUpdate>.message" in marked["turnlog.tools.execution_updated.v1"]
    assert marked["turnlog.session.summarized.v1"] == ["participants[]"]
    # timings, ids and model names stay in clear: analytics need them
    assert "turnlog.metrics.collected.v1" not in marked
    assert "turnlog.usage.updated.v1" not in marked


def test_the_json_schema_documents_personal_fields() -> None:
    schema = payload_schema(ConversationItemAdded)
    assert schema["x-turnlog-personal-paths"] == ["text"]
    assert schema["properties"]["text"]["x-turnlog-personal"] is True
    assert "x-turnlog-personal" not in schema["properties"]["role"]


def test_a_sealed_event_names_its_key_and_fields_and_holds_no_clear_text() -> None:
    key = DataKey.generate("s-1")
    call = ToolCall(
        call_id="c1", name="lookup", arguments='{"card": "4111"}', output="Paris", is_error=False
    )
    sealed = seal_event(_event(ToolsExecuted(calls=(call, call))), key)
    body = encode(sealed)
    assert b"4111" not in body
    assert b"Paris" not in body
    assert b'"name":"lookup"' in body  # not personal
    back = decode(body)
    assert back.keyid == "s-1"
    assert back.sealed == "calls.0.arguments calls.0.output calls.1.arguments calls.1.output"
    assert all(is_sealed(c.arguments) and is_sealed(c.output) for c in back.data.calls)
    # deterministic: equal texts seal equal (joins inside a session still match)
    assert back.data.calls[0].arguments == back.data.calls[1].arguments
    opened = open_value(back.data.model_dump(mode="json"), key)
    assert opened["calls"][0]["arguments"] == '{"card": "4111"}'
    assert open_value(back.data.model_dump(mode="json"), None)["calls"][1]["output"] == ERASED


def test_nested_and_union_fields_are_sealed() -> None:
    key = DataKey.generate("s-1")
    error = seal_event(
        _event(
            ErrorOccurred(error=ErrorDetail(source="llm", message="Ada said no", recoverable=True))
        ),
        key,
    )
    assert error.sealed == "error.message"
    assert is_sealed(error.data.error.message)
    update = seal_event(
        _event(
            ToolExecutionUpdated(
                update=ToolCallEndedUpdate(
                    entry_id="e", call_id="c", status="done", message="42 Main St"
                )
            )
        ),
        key,
    )
    assert update.sealed == "update.message"


def test_events_without_personal_text_are_unchanged() -> None:
    key = DataKey.generate("s-1")
    state = _event(UserStateChanged(old_state="listening", new_state="speaking"))
    assert seal_event(state, key) is state
    empty = _event(ConversationItemAdded(item_id="i", role="assistant", text=""))
    assert seal_event(empty, key) is empty  # nothing to hide, nothing marked
    counted = seal_event(state, key, redactions=0)
    assert counted.redactions == 0
    assert counted.keyid is None
    assert b'"keyid"' not in encode(state)  # absent, not null


def test_only_the_sessions_key_opens_a_token() -> None:
    key = DataKey.generate("s-1")
    token = key.seal("my phrase")
    with pytest.raises(SealingError):
        DataKey.generate("s-1").open(token)
    with pytest.raises(SealingError):  # a token moved to another session's key id
        DataKey("s-2", key.secret).open(token)
    with pytest.raises(SealingError):
        key.open(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    assert key.open("plain text") == "plain text"


def test_the_kek_wraps_and_unwraps_data_keys() -> None:
    private_pem, public_pem = generate_kek()
    wrapping = WrappingKey.from_pem(public_pem)
    unwrapping = UnwrappingKey.from_pem(private_pem)
    key = DataKey.generate("s-9")
    wrapped = wrapping.wrap(key)
    assert key.secret not in wrapped
    assert unwrapping.unwrap("s-9", wrapped) == key
    assert unwrapping.wrapping.kek_id == wrapping.kek_id
    assert len(wrapping.kek_id) == 16
    other_private, _ = generate_kek()
    with pytest.raises(SealingError, match="not wrapped by this KEK"):
        UnwrappingKey.from_pem(other_private).unwrap("s-9", wrapped)
    with pytest.raises(SealingError, match="PEM public key"):
        WrappingKey.from_pem(b"not a key")
    assert "secret" not in repr(key) or repr(key).count(key.secret.hex()) == 0


@given(st.text(min_size=1, max_size=200))
def test_any_text_round_trips(text: str) -> None:
    key = DataKey(f"s-{random.Random(SEED).randrange(10**6)}", bytes(range(64)))
    event = seal_event(_event(UserTranscribed(transcript=text, is_final=True), key.key_id), key)
    stored = json.loads(encode(event))["data"]["transcript"]
    assert is_sealed(stored)
    assert event.sealed == "transcript"
    assert key.open(decode(encode(event)).data.transcript) == text


def test_a_participant_identity_is_sealed_but_equal_across_events() -> None:
    key = DataKey.generate("s-1")
    joined = seal_event(_event(ParticipantJoined(identity="ada@example.com", sid="PA_1")), key)
    again = seal_event(_event(ParticipantJoined(identity="ada@example.com", sid="PA_2")), key)
    assert joined.data.identity == again.data.identity
    assert "ada" not in joined.data.identity
