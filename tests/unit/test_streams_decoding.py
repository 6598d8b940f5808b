"""The one decode step of every projection: raw records to a `DecodedBatch` (no services).

Upcasts are exercised on the global catalog (the one `decode_records` uses), with its
upcasters swapped for a copy during the test so nothing registered here outlives it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from tests.unit.test_streams_support import (
    BAD_KINDS,
    EXPECTED_REASON,
    all_events,
    as_raw,
    bad_body,
    bodies,
    mixed_bodies,
)
from turnlog.schemas import CATALOG, SchemaError, decode, encode
from turnlog.streams.decoding import decode_messages, decode_records, raw_record
from turnlog.streams.projector import DecodedBatch
from turnlog.streams.records import RawRecord

pytestmark = pytest.mark.unit

EVENTS = all_events()
OLD_TYPE = "turnlog.user.transcribed.v0"
NEW_TYPE = "turnlog.user.transcribed.v1"


def test_each_decoded_record_keeps_its_bytes_as_published() -> None:
    records = as_raw(bodies(EVENTS))
    batch = decode_records(records)
    assert batch.records == records
    assert not batch.dead_letters
    assert [d.raw for d in batch.events] == records
    for decoded, event in zip(batch.events, EVENTS, strict=True):
        source, raw = decoded.source, decoded.raw
        assert (source.topic, source.partition, source.offset) == (
            raw.topic, raw.partition, raw.offset
        )  # fmt: skip
        assert source.value is raw.value  # the very bytes: ClickHouse ingests them as is
        assert source.event == event


def test_a_record_that_does_not_decode_is_a_dead_letter_of_the_decode_stage() -> None:
    records = as_raw(mixed_bodies(EVENTS, every=20))
    batch = decode_records(records)
    assert len(batch) == len(records)
    assert len(batch.events) == len(EVENTS)
    assert len(batch.dead_letters) == len(BAD_KINDS)
    for letter in batch.dead_letters:
        with pytest.raises(SchemaError) as refused:
            decode(letter.record.value or b"")
        error = refused.value
        assert (letter.reason, letter.exception, letter.message, letter.stage) == (
            error.reason, type(error).__name__, error.message, "decode"
        )  # fmt: skip
    assert sorted(d.reason for d in batch.dead_letters) == sorted(EXPECTED_REASON.values())
    # fetch order is kept: every record is an event or a letter, in the order given
    seen = sorted([*(d.raw for d in batch.events), *(d.record for d in batch.dead_letters)],
                  key=records.index)  # fmt: skip
    assert seen == records


def test_an_empty_value_is_a_malformed_dead_letter() -> None:
    record = RawRecord("t", 0, 0, b"k", None)
    batch = decode_records([record])
    assert [(d.record, d.reason, d.stage) for d in batch.dead_letters] == [
        (record, "malformed", "decode")
    ]


def test_every_bad_kind_gets_its_reason() -> None:
    for kind in BAD_KINDS:
        body = bad_body(kind, EVENTS[0])
        batch = decode_records([RawRecord("t", 0, 0, None, body)])
        assert [d.reason for d in batch.dead_letters] == [EXPECTED_REASON[kind]], kind
        assert batch.events == []


def test_next_offsets_are_past_each_partitions_last_record() -> None:
    def at(topic: str, partition: int, offset: int) -> RawRecord:
        return RawRecord(topic, partition, offset, None, b"{")

    first = DecodedBatch(records=[at("a", 0, 5), at("a", 1, 9), at("a", 0, 6)])
    second = DecodedBatch(records=[at("b", 0, 0), at("a", 0, 8)])
    assert first.next_offsets() == {("a", 0): 7, ("a", 1): 10}
    first.extend(second)
    assert len(first) == 5
    assert first.next_offsets() == {("a", 0): 9, ("a", 1): 10, ("b", 0): 1}
    assert DecodedBatch().next_offsets() == {}


def test_next_offsets_count_dead_letters_too() -> None:
    records = as_raw(mixed_bodies(EVENTS, every=20))
    batch = decode_records(records)
    expected: dict[tuple[str, int], int] = {}
    for r in records:
        expected[r.topic, r.partition] = max(expected.get((r.topic, r.partition), 0),
                                             r.offset + 1)  # fmt: skip
    assert batch.next_offsets() == expected


def test_a_consumer_record_becomes_a_raw_record() -> None:
    body = encode(EVENTS[0])
    message: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic="turnlog.events", partition=3, offset=42, timestamp=1_700_000_000_500,
        timestamp_type=0, key=b"sess", value=body, checksum=None, serialized_key_size=4,
        serialized_value_size=len(body), headers=(("origin", b"gw"), ("empty", None)),
    )  # fmt: skip
    raw = raw_record(message)
    assert raw == RawRecord("turnlog.events", 3, 42, b"sess", body,
                            (("origin", b"gw"), ("empty", b"")), 1_700_000_000.5)  # fmt: skip
    batch = decode_messages([message])
    assert [d.source.event for d in batch.events] == [EVENTS[0]]
    assert batch.next_offsets() == {("turnlog.events", 3): 43}


@pytest.fixture
def upcaster(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`OLD_TYPE` (a transcript under `text`) upcast to `NEW_TYPE` on the global catalog,
    for the test only; yields the payloads the upcaster was given."""
    seen: list[dict[str, Any]] = []

    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data)
        renamed = dict(data)
        renamed["transcript"] = renamed.pop("text")
        return renamed

    monkeypatch.setattr(CATALOG, "_upcasters", dict(CATALOG._upcasters))
    CATALOG.register_upcaster(OLD_TYPE, NEW_TYPE, upcast)
    return seen


def old_record(offset: int) -> tuple[RawRecord, bytes]:
    """A `NEW_TYPE` event of the log written as `OLD_TYPE` was, and its current bytes."""
    event = next(e for e in EVENTS if e.type == NEW_TYPE)
    current = encode(event)
    body = json.loads(current)
    body["type"] = OLD_TYPE
    body["data"]["text"] = body["data"].pop("transcript")
    return RawRecord("turnlog.events", 0, offset, b"k", json.dumps(body).encode()), current


def test_an_upcast_event_has_no_bytes_as_published(upcaster: list[dict[str, Any]]) -> None:
    old, current = old_record(1)
    kept = as_raw(bodies(EVENTS[:3]))
    batch = decode_records([*kept, old])
    assert not batch.dead_letters
    assert upcaster  # the upcaster ran
    *as_published, upcast = batch.events
    assert [d.source.value for d in as_published] == [r.value for r in kept]
    assert upcast.source.value is None  # re-encoded where its bytes are needed
    assert upcast.source.event.type == NEW_TYPE
    assert encode(upcast.source.event) == current


def test_an_upcaster_registered_after_import_is_honoured(
    upcaster: list[dict[str, Any]],
) -> None:
    old, _ = old_record(1)
    batch = decode_records([old])
    assert upcaster
    assert batch.events[0].source.event.type == NEW_TYPE
    assert batch.events[0].source.value is None
