"""The projection engine's guard against skipping records: a batch must start, in each
partition, at the next offset to hand to the projector (no services)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from turnlog.streams.engine import offset_bounds, skipped_ahead
from turnlog.streams.records import RawRecord

pytestmark = pytest.mark.unit

TOPIC = "turnlog.events"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def records(*positions: tuple[int, int]) -> list[RawRecord]:
    return [RawRecord(TOPIC, partition, offset, b"k", b"{}") for partition, offset in positions]


def test_the_bounds_are_per_partition_in_fetch_order() -> None:
    first, last = offset_bounds(records((0, 5), (1, 9), (0, 6), (0, 7), (1, 10)))
    assert first == {P0: 5, P1: 9}
    assert last == {P0: 7, P1: 10}


def test_a_batch_starting_at_the_next_offsets_passes() -> None:
    first, _ = offset_bounds(records((0, 5), (1, 9)))
    assert skipped_ahead(first, {P0: 5, P1: 9}, {}) == {}


def test_a_batch_starting_past_the_next_offset_is_fetched_again_from_there() -> None:
    first, _ = offset_bounds(records((0, 8), (1, 9)))
    assert skipped_ahead(first, {P0: 5, P1: 9}, {}) == {P0: 5}


def test_the_same_gap_after_fetching_again_is_the_logs_own_and_passes() -> None:
    first, _ = offset_bounds(records((0, 8)))
    assert skipped_ahead(first, {P0: 5}, {P0: 5}) == {}
    assert skipped_ahead(first, {P0: 5}, {P0: 3}) == {P0: 5}  # rewound elsewhere before


def test_records_processed_already_and_partitions_not_known_yet_pass() -> None:
    first, _ = offset_bounds(records((0, 2), (1, 40)))
    assert skipped_ahead(first, {P0: 5}, {}) == {}


def test_partitions_of_two_topics_are_kept_apart() -> None:
    other = TopicPartition("other", 0)
    batch = [*records((0, 5)), RawRecord("other", 0, 50, b"k", b"{}")]
    first, last = offset_bounds(batch)
    assert first == {P0: 5, other: 50}
    assert last == {P0: 5, other: 50}
    assert skipped_ahead(first, {P0: 5, other: 40}, {P0: 40}) == {other: 40}
