"""Envelope, encode and decode: round trips of every type, and every bad input."""

from __future__ import annotations

import json
import re
import types
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from turnlog.schemas import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    CloudEvent,
    EventPayload,
    EventTooLargeError,
    InvalidPayloadError,
    MalformedEventError,
    SchemaError,
    SessionClosed,
    UnknownEventTypeError,
    UnsupportedSpecVersionError,
    UserTranscribed,
    agent_source,
    decode,
    encode,
    new_event,
)

pytestmark = pytest.mark.unit

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339_MICROS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
SOURCE = agent_source("tutor", "AW_worker1")


# -- strategies derived from the models, so a new field is covered without editing tests


def _strategy(annotation: Any, bounds: dict[str, Any]) -> st.SearchStrategy[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        return _strategy(base, bounds | _bounds(metadata))
    if origin in (Union, types.UnionType):
        return st.one_of([_strategy(arg, bounds) for arg in get_args(annotation)])
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin is tuple:
        item = get_args(annotation)[0]
        return st.lists(_strategy(item, {}), max_size=3).map(tuple)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_strategy(annotation)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(bounds.get("min_value", -(2**53)), bounds.get("max_value", 2**53))
    if annotation is float:
        return st.floats(
            min_value=bounds.get("min_value", -1e9),
            max_value=bounds.get("max_value", 1e9),
            allow_nan=False,
            allow_infinity=False,
        )
    if annotation is str:
        return st.text(max_size=30)
    if annotation in (datetime, AwareDatetime):
        return st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        )
    raise TypeError(f"no strategy for {annotation!r}")


def _bounds(metadata: Any) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for item in metadata:
        for constraint in item.metadata if isinstance(item, FieldInfo) else [item]:
            if isinstance(constraint, annotated_types.Ge):
                bounds["min_value"] = constraint.ge
            elif isinstance(constraint, annotated_types.Le):
                bounds["max_value"] = constraint.le
    return bounds


def model_strategy(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    fields = {
        name: _strategy(field.annotation, _bounds(field.metadata))
        for name, field in model.model_fields.items()
    }
    return st.builds(model, **fields)


envelope_args: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "session_id": st.text(min_size=1, max_size=20),
        "sequence": st.integers(1, 2**53),
        "source": st.builds(agent_source, st.text(max_size=10), st.text(max_size=10)),
        "subject": st.text(min_size=1, max_size=20),
        "time": st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2100, 1, 1),
            timezones=st.just(UTC),
        ),
    }
)


def _event(payload: EventPayload, **overrides: Any) -> CloudEvent[Any]:
    args: dict[str, Any] = {
        "session_id": "sess_1",
        "sequence": 1,
        "source": SOURCE,
        "subject": "room-1",
    } | overrides
    return new_event(payload, **args)


def _body(**changes: Any) -> dict[str, Any]:
    """A valid encoded event as a dict, with `changes` applied (None deletes the key)."""
    raw: dict[str, Any] = json.loads(
        encode(_event(UserTranscribed(transcript="hi", is_final=True)))
    )
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return raw


def _decode_dict(raw: dict[str, Any]) -> CloudEvent[EventPayload]:
    return decode(json.dumps(raw).encode())


# -- round trips


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_type_round_trips(event_type: str, data: st.DataObject) -> None:
    payload = data.draw(model_strategy(EVENT_TYPES[event_type]))
    event = new_event(payload, **data.draw(envelope_args))
    decoded = decode(encode(event))
    assert decoded == event
    assert type(decoded.data) is EVENT_TYPES[event_type]


def test_encoding_is_a_compact_utf8_structured_cloudevent() -> None:
    event = _event(UserTranscribed(transcript="très bien, 好", is_final=False, turn_id="t1"))
    body = encode(event)
    assert "très bien, 好".encode() in body
    assert b": " not in body
    assert b", " not in body.replace("très bien, 好".encode(), b"")
    raw = json.loads(body)
    assert raw["specversion"] == "1.0"
    assert raw["type"] == "turnlog.user.transcribed.v1"
    assert raw["datacontenttype"] == "application/json"
    assert raw["source"] == "/agents/tutor/AW_worker1"
    assert raw["partitionkey"] == raw["sessionid"] == "sess_1"
    assert raw["data"]["turn_id"] == "t1"
    assert UUID7.match(raw["id"])
    assert RFC3339_MICROS_Z.match(raw["time"])


def test_new_event_defaults_to_a_fresh_uuid7_and_now() -> None:
    before = datetime.now(UTC)
    first = _event(SessionClosed(reason="user_initiated"))
    second = _event(SessionClosed(reason="user_initiated"))
    assert UUID7.match(first.id)
    assert first.id != second.id
    assert before <= first.time <= datetime.now(UTC)


def test_time_is_normalized_to_utc_with_microseconds() -> None:
    paris = timezone(timedelta(hours=2))
    event = _event(SessionClosed(reason="error"), time=datetime(2025, 6, 1, 12, 0, tzinfo=paris))
    assert event.time == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert json.loads(encode(event))["time"] == "2025-06-01T10:00:00.000000Z"


# -- bad input, each with its typed error naming the problem


def test_unknown_type_is_named() -> None:
    raw = _body(type="turnlog.user.teleported.v1")
    with pytest.raises(UnknownEventTypeError, match=r"turnlog\.user\.teleported\.v1") as info:
        _decode_dict(raw)
    assert info.value.reason == "unknown_type"
    assert info.value.event_type == "turnlog.user.teleported.v1"
    assert info.value.event_id == raw["id"]


def test_wrong_field_type_names_the_field_path() -> None:
    raw = _body(data={"transcript": "hi", "is_final": "maybe"})
    with pytest.raises(InvalidPayloadError, match=r"data\.is_final") as info:
        _decode_dict(raw)
    assert info.value.reason == "invalid_payload"
    assert "turnlog.user.transcribed.v1" in str(info.value)
    assert info.value.problems[0].startswith("data.is_final:")


def test_missing_required_field_is_named() -> None:
    with pytest.raises(InvalidPayloadError, match=r"data\.transcript: Field required"):
        _decode_dict(_body(data={"is_final": True}))


def test_nested_invalid_field_is_named() -> None:
    raw = _body(type="turnlog.tools.executed.v1", data={"calls": [{"call_id": "c1"}]})
    with pytest.raises(InvalidPayloadError, match=r"data\.calls\[0\]\.name: Field required"):
        _decode_dict(raw)


def test_invalid_payload_message_truncates_huge_inputs() -> None:
    raw = _body(data={"transcript": ["x" * 100_000], "is_final": True})
    with pytest.raises(InvalidPayloadError) as info:
        _decode_dict(raw)
    assert len(str(info.value)) < 300


def test_wrong_specversion_is_named() -> None:
    with pytest.raises(UnsupportedSpecVersionError, match=r"'0\.3'") as info:
        _decode_dict(_body(specversion="0.3"))
    assert info.value.reason == "unsupported_specversion"


def test_missing_specversion_is_malformed() -> None:
    with pytest.raises(MalformedEventError, match="specversion"):
        _decode_dict(_body(specversion=None))


def test_body_over_the_limit_is_rejected_before_parsing() -> None:
    body = b"\xff" * (MAX_EVENT_BYTES + 1)  # neither UTF-8 nor JSON: size must win
    with pytest.raises(
        EventTooLargeError, match=rf"{MAX_EVENT_BYTES + 1} bytes.*{MAX_EVENT_BYTES}"
    ):
        decode(body)


def test_size_limit_is_inclusive_for_encode_and_decode() -> None:
    base = len(encode(_event(UserTranscribed(transcript="", is_final=True))))
    at_limit = _event(UserTranscribed(transcript="a" * (MAX_EVENT_BYTES - base), is_final=True))
    body = encode(at_limit)
    assert len(body) == MAX_EVENT_BYTES
    assert decode(body) == at_limit
    over = _event(UserTranscribed(transcript="a" * (MAX_EVENT_BYTES - base + 1), is_final=True))
    with pytest.raises(EventTooLargeError, match=r"turnlog\.user\.transcribed\.v1") as info:
        encode(over)
    assert (info.value.size, info.value.limit, info.value.reason) == (
        MAX_EVENT_BYTES + 1,
        MAX_EVENT_BYTES,
        "too_large",
    )
    with pytest.raises(EventTooLargeError):
        decode(body + b" ")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"specversion": "1.0", "type": "\xff\xfe"}', "not valid UTF-8: byte 32"),
        (b"[1, 2]", "JSON array, expected an object"),
        (b'"event"', "JSON string, expected an object"),
        (b"null", "JSON null, expected an object"),
    ],
)
def test_unparseable_bodies_are_malformed(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedEventError, match=re.escape(problem)) as info:
        decode(body)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"time": "2025-01-01T10:00:00"}, "time"),  # naive
        ({"time": 1735725600}, "time"),  # a number, not RFC 3339
        ({"sequence": 0}, "sequence"),
        ({"sequence": "1"}, "sequence"),
        ({"id": ""}, "id"),
        ({"id": 42}, "id"),
        ({"source": "tutor"}, "source"),
        ({"subject": ""}, "subject"),
        ({"partitionkey": "other"}, "partitionkey"),
        ({"datacontenttype": "text/plain"}, "datacontenttype"),
        ({"id": None}, "id"),
        ({"type": None}, "type"),
        ({"type": 7}, "type"),
        ({"data": None}, "data"),
    ],
)
def test_invalid_envelope_fields_are_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedEventError, match=field):
        _decode_dict(_body(**changes))


@pytest.mark.parametrize(
    "event_id",
    ["3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", "evt-42", "3F2B8C1E4D5A4B6C8D7E9F0A1B2C3D4E"],
)
def test_other_producers_ids_decode(event_id: str) -> None:
    """CloudEvents 1.0 asks only for a non-empty string: a uuid4 or an opaque id from
    another producer is kept as it is (order comes from `sequence`)."""
    event = _decode_dict(_body(id=event_id))
    assert event.id == event_id
    assert decode(encode(event)) == event


def test_an_empty_id_is_refused_with_its_reason() -> None:
    with pytest.raises(MalformedEventError, match=r"id: .*must be a non-empty string") as info:
        _decode_dict(_body(id=""))
    assert info.value.reason == "malformed"


def test_new_event_rejects_a_naive_time() -> None:
    with pytest.raises(MalformedEventError, match="time: Input should have timezone info"):
        _event(SessionClosed(reason="error"), time=datetime(2025, 1, 1))


def test_new_event_rejects_sequence_zero() -> None:
    with pytest.raises(MalformedEventError, match="sequence: Input should be greater than or"):
        _event(SessionClosed(reason="error"), sequence=0)


def test_every_error_is_a_schema_error_with_a_reason() -> None:
    for error_type in (
        MalformedEventError,
        UnknownEventTypeError,
        InvalidPayloadError,
        UnsupportedSpecVersionError,
        EventTooLargeError,
    ):
        assert issubclass(error_type, SchemaError)
        assert re.fullmatch(r"[a-z_]+", error_type.reason)
