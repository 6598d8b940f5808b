"""`decode`'s two paths agree: the one-pass validation of the raw bytes and the step by
step path that upcasts and names errors give the same event, or the same error."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict

from tests.unit.test_schemas_codec import envelope_args, model_strategy
from turnlog.schemas import (
    CATALOG,
    EVENT_TYPES,
    Catalog,
    CloudEvent,
    EventPayload,
    SchemaError,
    SessionClosed,
    agent_source,
    codec,
    decode,
    encode,
    new_event,
)

pytestmark = pytest.mark.unit

SESSIONS_DIR = Path(__file__).parents[1] / "fixtures" / "sessions"
FIXTURE_BODIES = [
    line.encode()
    for path in sorted(SESSIONS_DIR.glob("*.jsonl"))
    for line in path.read_text().splitlines()
    if line
]


def _outcome(body: bytes, catalog: Catalog = CATALOG) -> tuple[str, Any]:
    """What the slow path makes of `body`: the event, or the error's class, reason and
    message."""
    try:
        return "event", codec._slow_decode(body, catalog)
    except SchemaError as error:
        return "error", (type(error), error.reason, str(error), error.event_type, error.event_id)


def _assert_paths_agree(body: bytes, catalog: Catalog = CATALOG) -> None:
    kind, expected = _outcome(body, catalog)
    fast = codec._fast_decode(body, catalog)
    if kind == "event":
        assert fast is None or (
            fast == expected
            and type(fast) is CloudEvent
            and type(fast.data) is type(expected.data)
            and fast.model_fields_set == expected.model_fields_set
        ), body
        assert decode(body, catalog=catalog) == expected
    else:
        assert fast is None, f"the fast path accepted what the slow path refuses: {body!r}"
        with pytest.raises(expected[0]) as info:
            decode(body, catalog=catalog)
        error = info.value
        assert (type(error), error.reason, str(error), error.event_type, error.event_id) == expected


def test_every_fixture_event_takes_the_fast_path_to_the_same_event() -> None:
    assert len(FIXTURE_BODIES) > 100
    for body in FIXTURE_BODIES:
        fast = codec._fast_decode(body, CATALOG)
        assert fast is not None, body
        _assert_paths_agree(body)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_both_paths_agree_on_every_type(event_type: str, data: st.DataObject) -> None:
    payload = data.draw(model_strategy(EVENT_TYPES[event_type]))
    event = new_event(payload, **data.draw(envelope_args))
    body = encode(event)
    assert codec._fast_decode(body, CATALOG) == event
    _assert_paths_agree(body)


_ENVELOPE_KEYS = ("specversion", "id", "source", "type", "time", "subject",
                  "datacontenttype", "sessionid", "sequence", "partitionkey", "data")  # fmt: skip
_ODD_VALUES: tuple[Any, ...] = (
    None, 0, -1, 1.5, True, "", "x", "1.0", [], {}, [1], {"a": 1},
    "2025-01-01T10:00:00", "2025-01-01T10:00:00+02:00", 2**70, float("nan"), float("-inf"),
)  # fmt: skip


def _mutations(raw: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """Envelope and payload fields deleted or replaced by odd values, unknown fields."""
    out: list[dict[str, Any]] = []
    for key in _ENVELOPE_KEYS:
        out.append({k: v for k, v in raw.items() if k != key})
        out.append(raw | {key: rng.choice(_ODD_VALUES)})
    data = raw["data"]
    for key in data:
        out.append(raw | {"data": {k: v for k, v in data.items() if k != key}})
        out.append(raw | {"data": data | {key: rng.choice(_ODD_VALUES)}})
    out.append(raw | {"unknown": {"nested": [1, 2]}, "data": data | {"unknown": 1}})
    out.append(raw | {"type": raw["type"].replace(".v1", ".v9")})
    return out


def test_both_paths_agree_on_invalid_events() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    bodies = 0
    for original in rng.sample(FIXTURE_BODIES, 40):
        for raw in _mutations(json.loads(original), rng):
            _assert_paths_agree(json.dumps(raw).encode())
            bodies += 1
    assert bodies > 500


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b"null",
        # pydantic-core's parser takes NaN and Infinity; `decode` refuses them anywhere,
        # even in a field it would ignore
        FIXTURE_BODIES[0].replace(b'"specversion"', b'"extra":NaN,"specversion"'),
        FIXTURE_BODIES[0].replace(b'"specversion"', b'"extra":-Infinity,"specversion"'),
        # a repeated key: the last one wins on both paths
        FIXTURE_BODIES[0].replace(b'"sequence":1', b'"sequence":"x","sequence":1'),
        FIXTURE_BODIES[0].replace(b'"sequence":1', b'"sequence":1,"sequence":"x"'),
        FIXTURE_BODIES[0].replace(b'"subject":"', b'"subject":"\\u0000'),
    ],
)
def test_both_paths_agree_on_odd_bodies(body: bytes) -> None:
    _assert_paths_agree(body)


class _NoteV1(EventPayload):
    """Test-only: a note."""

    TYPE: ClassVar[str] = "turnlog.test.note.v1"
    text: str
    """The note."""


class _NoteV2(EventPayload):
    """Test-only: a note with a title."""

    TYPE: ClassVar[str] = "turnlog.test.note.v2"
    title: str
    """First line."""


def _note_body() -> bytes:
    event = new_event(_NoteV1(text="Shopping\nmilk"), session_id="s", sequence=1,
                      source=agent_source("tutor", "w"), subject="room")  # fmt: skip
    return encode(event)


def test_the_catalog_needs_no_scan_for_nan() -> None:
    fast = codec._fast_validator(CATALOG)
    assert fast is not None
    assert fast[1] is False  # every float refuses NaN, no field takes any JSON value


class _Loose(EventPayload):
    """Test-only: a float that takes NaN."""

    TYPE: ClassVar[str] = "turnlog.test.loose.v1"
    model_config = ConfigDict(allow_inf_nan=True)
    value: float
    """Anything."""


def test_a_catalog_with_a_float_that_takes_nan_scans_and_refuses_it() -> None:
    catalog = Catalog([_Loose])
    body = encode(new_event(_Loose(value=1.0), session_id="s", sequence=1,
                            source=agent_source("tutor", "w"), subject="room"))  # fmt: skip
    fast = codec._fast_validator(catalog)
    assert fast is not None
    assert fast[1] is True
    _assert_paths_agree(body.replace(b'"value":1.0', b'"value":NaN'), catalog)
    assert codec._fast_decode(body, catalog) == decode(body, catalog=catalog)


def test_unknown_fields_take_the_slow_path_and_are_ignored() -> None:
    raw = json.loads(FIXTURE_BODIES[0])
    raw["traceparent"] = "00-abc-def-01"
    raw["data"]["added_later"] = {"nested": [1.5]}
    body = json.dumps(raw).encode()
    assert codec._fast_decode(body, CATALOG) is None
    assert decode(body) == decode(FIXTURE_BODIES[0])


def test_a_type_registered_after_the_first_decode_takes_the_fast_path() -> None:
    catalog = Catalog([SessionClosed])
    body = _note_body()
    _assert_paths_agree(body, catalog)  # unknown type: refused with its name
    assert codec._fast_decode(body, catalog) is None
    catalog.register(_NoteV1)
    assert codec._fast_decode(body, catalog) == decode(body, catalog=catalog)


def test_an_upcaster_registered_later_supersedes_a_modelled_type() -> None:
    catalog = Catalog([_NoteV1, _NoteV2])
    body = _note_body()
    assert decode(body, catalog=catalog).type == "turnlog.test.note.v1"
    catalog.register_upcaster(
        "turnlog.test.note.v1", "turnlog.test.note.v2", lambda d: {"title": d["text"]}
    )
    assert codec._fast_decode(body, catalog) is None
    event = decode(body, catalog=catalog)
    assert event.type == "turnlog.test.note.v2"
    assert event.data == _NoteV2(title="Shopping\nmilk")


def test_threads_decoding_at_once_share_one_validator_built_once() -> None:
    """The projections decode on threads of their own: the first decodes of a catalog,
    at once on several threads, build its validator once (building it in two threads at
    once crashed CPython's parser) and all decode."""
    catalog = Catalog(list(CATALOG.types.values()))
    start = threading.Barrier(4)

    def decode_all() -> list[CloudEvent[Any]]:
        start.wait()
        return [decode(body, catalog=catalog) for body in FIXTURE_BODIES]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [f.result() for f in [pool.submit(decode_all) for _ in range(4)]]
    assert all(result == results[0] for result in results)
    assert len(results[0]) == len(FIXTURE_BODIES)
    assert codec._VALIDATORS[catalog][1] is not None
