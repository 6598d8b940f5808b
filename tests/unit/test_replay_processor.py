"""The rebuild's replay processor on the in-memory projection: read models, dead letters,
isolation of bad events, retries (no services)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any, cast

import psycopg
import pytest

from tests.unit.test_streams_support import (
    BAD_KINDS,
    EXPECTED_REASON,
    all_events,
    as_raw,
    bodies,
    mixed_bodies,
    renamed,
)
from turnlog.projections.clickhouse.store import QueryFailedError
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.errors import ProjectionWriteError, UnhandledEventError
from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.postgres.writer import BatchResult, PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC
from turnlog.streams.dlq import dead_letter_record, decoded_headers
from turnlog.streams.errors import SinkUnavailableError
from turnlog.streams.isolate import RetryPolicy
from turnlog.streams.rebuild.apply import Replayed, ReplayProcessor
from turnlog.streams.records import RawRecord

pytestmark = pytest.mark.unit

EVENTS = all_events()
RECORDS = as_raw(bodies(EVENTS))
NO_PAUSES = RetryPolicy(first_delay=0.0, max_delay=0.0)
"""The default number of attempts without waiting (tests that never retry)."""


class Sleeps:
    """Stands in for `time.sleep`: records each pause instead of taking it."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    """The pauses `ReplayProcessor` takes (its `sleep` hook; `processor_for` passes it)."""
    return Sleeps()


def processor_for(
    projection: InMemoryProjection, clickhouse: object | None = None, **kwargs: Any
) -> ReplayProcessor:
    """A processor over the in-memory projection (the same `apply_batch` as
    `PostgresProjection`, which is the declared type)."""
    kwargs.setdefault("retry", NO_PAUSES)
    kwargs.setdefault("sleep", Sleeps())
    return ReplayProcessor(
        cast(PostgresProjection, projection), cast(ClickHouseProjection | None, clickhouse),
        **kwargs,
    )  # fmt: skip


def run(processor: ReplayProcessor, records: Sequence[RawRecord], size: int) -> list[Replayed]:
    return [processor.process(records[i : i + size]) for i in range(0, len(records), size)]


def reference() -> dict[str, list[dict[str, Any]]]:
    projection = InMemoryProjection()
    projection.apply_batch([SourceRecord(EVENTS_TOPIC, 0, i, e) for i, e in enumerate(EVENTS)])
    return projection.snapshot()


def test_the_read_models_equal_the_projections_own() -> None:
    projection = InMemoryProjection()
    outcomes = run(processor_for(projection), RECORDS, 25)
    assert projection.snapshot() == reference()
    assert sum(o.applied for o in outcomes) == len(EVENTS)
    assert sum(o.consumed for o in outcomes) == len(RECORDS)
    assert not any(o.dead_letters for o in outcomes)


def test_a_batch_processed_twice_adds_nothing() -> None:
    projection = InMemoryProjection()
    processor = processor_for(projection)
    first = processor.process(RECORDS)
    second = processor.process(RECORDS)
    assert (first.applied, first.duplicates) == (len(EVENTS), 0)
    assert (second.applied, second.duplicates) == (0, len(EVENTS))
    assert projection.snapshot() == reference()


def test_shuffled_sessions_give_the_same_read_models() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    shuffled = RECORDS[:]
    random.Random(seed).shuffle(shuffled)
    projection = InMemoryProjection()
    run(processor_for(projection), shuffled, 13)
    assert projection.snapshot() == reference()


def test_bad_records_go_to_the_dlq_and_every_good_one_is_projected() -> None:
    good = [e for copy in range(4) for e in renamed(EVENTS, f"~{copy}")]
    records = as_raw(mixed_bodies(good))
    projection = InMemoryProjection()
    outcomes = run(processor_for(projection), records, 50)
    letters = [letter for o in outcomes for letter in o.dead_letters]
    assert len(letters) == len(BAD_KINDS)
    assert sorted(letter.reason for letter in letters) == sorted(EXPECTED_REASON.values())
    assert {letter.stage for letter in letters} == {"decode"}
    assert sum(o.applied for o in outcomes) == len(good)
    reference_projection = InMemoryProjection()
    processor_for(reference_projection).process(as_raw(bodies(good)))
    assert projection.snapshot() == reference_projection.snapshot()
    # what would go to the DLQ: the original bytes, with where they came from
    for letter in letters:
        out = dead_letter_record(letter, topic="turnlog.events.dlq", at=EVENTS[0].time)
        headers = decoded_headers(out.headers)
        source = next(r for r in records if (r.partition, r.offset) == (
            int(headers["turnlog-dlq-source-partition"]),
            int(headers["turnlog-dlq-source-offset"]),
        ))  # fmt: skip
        assert out.value == source.value
        assert headers["turnlog-dlq-stage"] == "decode"


class PoisonedProjection(InMemoryProjection):
    """Refuses, as PostgreSQL would, any batch holding one of `poisoned` (event ids)."""

    def __init__(self, poisoned: set[str]) -> None:
        super().__init__()
        self.poisoned = poisoned
        self.calls = 0

    def apply_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        self.calls += 1
        if any(r.event.id in self.poisoned for r in records):
            cause = psycopg.DataError("value out of range")
            raise ProjectionWriteError("refused", retryable=False) from cause
        return super().apply_batch(records)


def test_bisection_isolates_the_bad_events_and_projects_the_rest() -> None:
    poisoned = {EVENTS[10].id, EVENTS[97].id}
    projection = PoisonedProjection(poisoned)
    outcome = processor_for(projection).process(RECORDS)
    assert {
        json.loads(letter.record.value or b"")["id"] for letter in outcome.dead_letters
    } == poisoned
    assert {letter.reason for letter in outcome.dead_letters} == {"projection_failed"}
    assert {letter.stage for letter in outcome.dead_letters} == {"postgres"}
    assert {letter.exception for letter in outcome.dead_letters} == {"ProjectionWriteError"}
    assert outcome.applied == len(EVENTS) - 2
    assert projection.calls < 30  # bisection, not one call per event


class UnknowingProjection(InMemoryProjection):
    """Knows no `tools.executed` events (a catalog newer than the projector)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def apply_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        self.calls += 1
        for r in records:
            if r.event.type == "turnlog.tools.executed.v1":
                raise UnhandledEventError(r.event.type, event_id=r.event.id,
                                          session_id=r.event.sessionid)  # fmt: skip
        return super().apply_batch(records)


def test_an_unhandled_type_is_pinpointed_by_its_event_id() -> None:
    projection = UnknowingProjection()
    outcome = processor_for(projection).process(RECORDS)
    tools = [e for e in EVENTS if e.type == "turnlog.tools.executed.v1"]
    assert tools
    assert sorted(json.loads(d.record.value or b"")["id"] for d in outcome.dead_letters) == sorted(
        e.id for e in tools
    )
    assert {letter.reason for letter in outcome.dead_letters} == {"unhandled_type"}
    assert outcome.applied == len(EVENTS) - len(tools)
    # each failure names its event: one call per tools event, then the rest, no bisection
    assert projection.calls == len(tools) + 1


class FlakyProjection(InMemoryProjection):
    def __init__(self, failures: int, *, retryable: bool = True) -> None:
        super().__init__()
        self.failures = failures
        self.retryable = retryable

    def apply_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        if self.failures > 0:
            self.failures -= 1
            raise ProjectionWriteError("connection lost", retryable=self.retryable)
        return super().apply_batch(records)


def test_a_retryable_failure_is_retried_with_growing_pauses(sleeps: Sleeps) -> None:
    projection = FlakyProjection(failures=3)
    policy = RetryPolicy(attempts=5, first_delay=0.2, max_delay=0.5)
    outcome = processor_for(projection, retry=policy, sleep=sleeps).process(RECORDS)
    assert outcome.applied == len(EVENTS)
    assert not outcome.dead_letters
    assert sleeps.calls == [0.2, 0.4, 0.5]  # doubling, capped
    assert projection.snapshot() == reference()


def test_a_sink_that_stays_down_fails_the_batch_without_dead_letters(sleeps: Sleeps) -> None:
    projection = FlakyProjection(failures=100)
    processor = processor_for(projection, retry=RetryPolicy(attempts=3), sleep=sleeps)
    with pytest.raises(SinkUnavailableError) as failure:
        processor.process(RECORDS)
    assert failure.value.sink == "postgres"
    assert projection.failures == 97  # three attempts of the whole batch, no bisection
    assert sleeps.calls == [0.2, 0.4]
    assert projection.snapshot() == InMemoryProjection().snapshot()


def test_a_broken_database_is_not_blamed_on_the_events(sleeps: Sleeps) -> None:
    projection = FlakyProjection(failures=100, retryable=False)  # e.g. a missing table
    with pytest.raises(SinkUnavailableError) as failure:
        processor_for(projection, retry=RetryPolicy(), sleep=sleeps).process(RECORDS)
    assert failure.value.sink == "postgres"
    assert projection.failures == 99  # one attempt, no bisection
    assert sleeps.calls == []


class PoisonedClickHouse:
    """The `write_batch` of a ClickHouse projection that refuses one event's value."""

    def __init__(self, poisoned: str) -> None:
        self.poisoned = poisoned
        self.written: list[str] = []

    def write_batch(self, records: Sequence[SourceRecord]) -> int:
        if any(r.event.id == self.poisoned for r in records):
            raise QueryFailedError("Code: 53. Type mismatch", code=53)
        self.written.extend(r.event.id for r in records)
        return len(records)


def test_clickhouse_isolates_its_own_bad_event_after_postgres() -> None:
    projection = InMemoryProjection()
    clickhouse = PoisonedClickHouse(EVENTS[50].id)
    outcome = processor_for(projection, clickhouse).process(RECORDS)
    assert [letter.stage for letter in outcome.dead_letters] == ["clickhouse"]
    assert [letter.reason for letter in outcome.dead_letters] == ["projection_failed"]
    assert json.loads(outcome.dead_letters[0].record.value or b"")["id"] == EVENTS[50].id
    assert outcome.applied == len(EVENTS)  # PostgreSQL took it
    assert projection.snapshot() == reference()
    assert sorted(clickhouse.written) == sorted(e.id for e in EVENTS if e.id != EVENTS[50].id)


def test_clickhouse_is_not_given_what_postgres_refused() -> None:
    poisoned = EVENTS[20].id
    clickhouse = PoisonedClickHouse("none")
    outcome = processor_for(PoisonedProjection({poisoned}), clickhouse).process(RECORDS)
    assert [letter.stage for letter in outcome.dead_letters] == ["postgres"]
    assert poisoned not in clickhouse.written
    assert len(clickhouse.written) == len(EVENTS) - 1


def test_records_that_do_not_decode_reach_neither_sink() -> None:
    records = as_raw(mixed_bodies(EVENTS, every=30))
    clickhouse = PoisonedClickHouse("none")
    outcome = processor_for(InMemoryProjection(), clickhouse).process(records)
    assert {letter.stage for letter in outcome.dead_letters} == {"decode"}
    assert outcome.consumed == len(records)
    assert len(clickhouse.written) == outcome.applied == len(EVENTS)
