"""The spool's record and ack formats: round trips, torn tails, corruption."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnlog.agent_gateway.publisher.message import Message
from turnlog.agent_gateway.publisher.spool_format import (
    HEADER_BYTES,
    Tail,
    check_header,
    decode_acks,
    encode_ack,
    encode_record,
    encode_records,
    file_header,
    is_torn,
    iter_file,
    scan,
)

pytestmark = pytest.mark.unit

messages = st.builds(
    Message,
    type=st.from_regex(r"turnlog\.[a-z_.]{1,30}\.v[1-9]", fullmatch=True),
    key=st.binary(min_size=1, max_size=80),
    value=st.binary(max_size=3000),
    event_id=st.uuids().map(str),
    published_ns=st.integers(min_value=0, max_value=2**63 - 1),
    isolate=st.booleans(),
)


def _message(n: int, size: int = 500) -> Message:
    return Message(type="turnlog.test.v1", key=b"sess-%d" % (n % 3), value=b"v" * size,
                   event_id=f"id-{n}", published_ns=1_700_000_000_000_000_000 + n)


@given(st.lists(messages, max_size=8), st.text(max_size=40))
def test_records_round_trip(batch: list[Message], reason: str) -> None:
    data = b"".join(encode_record(m, reason=reason) for m in batch)

    result = scan(data, base=HEADER_BYTES)

    assert result.tail is Tail.CLEAN
    assert [r.message for r in result.records] == batch
    assert all(r.reason == reason for r in result.records)
    assert result.stop == HEADER_BYTES + len(data)
    offsets = [(r.start, r.end) for r in result.records]
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(offsets))


def test_every_truncation_of_the_last_record_is_a_torn_tail() -> None:
    whole = encode_records([_message(1), _message(2)])
    first = len(encode_record(_message(1)))
    for cut in range(first, len(whole)):
        result = scan(whole[:cut], base=0)
        assert [r.message.event_id for r in result.records] == ["id-1"]
        if cut > first:
            assert result.tail is Tail.INCOMPLETE
            assert is_torn(whole[first:cut], result.tail)


def test_a_zeroed_tail_is_torn_not_a_record() -> None:
    data = encode_records([_message(1)]) + bytes(4096)

    result = scan(data, base=0)

    assert [r.message.event_id for r in result.records] == ["id-1"]
    assert result.tail is Tail.INVALID
    assert is_torn(data[result.stop:], result.tail)


def test_a_damaged_record_before_good_ones_is_corruption() -> None:
    records = [encode_record(_message(n)) for n in range(3)]
    damaged = bytearray(records[1])
    damaged[40] ^= 0xFF
    data = records[0] + bytes(damaged) + records[2]

    result = scan(data, base=0)

    assert [r.message.event_id for r in result.records] == ["id-0"]
    assert result.tail is Tail.INVALID
    assert not is_torn(data[result.stop:], result.tail)


@pytest.mark.parametrize("length", [0, 3, 2**31])
def test_an_impossible_length_is_invalid(length: int) -> None:
    frame = length.to_bytes(4, "little") + b"\x01\x02\x03\x04" + b"x" * 64

    assert scan(frame, base=0).tail is Tail.INVALID


def test_a_record_larger_than_the_buffer_asks_for_more() -> None:
    data = encode_record(_message(1, size=10_000))

    result = scan(data[:100], base=0)

    assert result.tail is Tail.INCOMPLETE
    assert result.needed == len(data)


def test_max_records_stops_cleanly_between_records() -> None:
    data = encode_records([_message(n) for n in range(5)])

    result = scan(data, base=0, max_records=2)

    assert len(result.records) == 2
    assert result.tail is Tail.CLEAN
    assert result.stop == result.records[-1].end


def test_files_start_with_a_versioned_header() -> None:
    assert check_header(file_header())
    assert not check_header(b"TLSPOOL\x00\x02\x00" + bytes(6))
    assert not check_header(b"short")
    data = file_header() + encode_records([_message(1)])
    assert [r.message.event_id for r in iter_file(data)] == ["id-1"]
    assert list(iter_file(b"not a spool file at all")) == []


def test_the_last_valid_ack_entry_wins_and_a_torn_one_is_ignored() -> None:
    acks = encode_ack(100) + encode_ack(250) + encode_ack(900)[:9]

    assert decode_acks(acks) == 250
    assert decode_acks(b"") is None
    damaged = bytearray(encode_ack(100) + encode_ack(250))
    damaged[17] ^= 0x01
    assert decode_acks(bytes(damaged)) == 100
