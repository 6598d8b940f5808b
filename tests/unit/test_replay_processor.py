"""The batch processor on the in-memory projection: read models, dead letters, derived
records, isolation of bad events, retries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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
from turnlog.projections.postgres.errors import ProjectionWriteError, UnhandledEventError
from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.postgres.writer import BatchResult
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, decode
from turnlog.streams.dlq import decoded_headers
from turnlog.streams.errors import SinkUnavailableError
from turnlog.streams.isolate import RetryPolicy
from turnlog.streams.processor import BatchOutcome, BatchProcessor, decode_records
from turnlog.streams.records import RawRecord
from turnlog.streams.state import MemoryState

pytestmark = pytest.mark.unit

EVENTS = all_events()
RECORDS = as_raw(bodies(EVENTS))


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def processor_for(projection: InMemoryProjection, **kwargs: Any) -> BatchProcessor:
    kwargs.setdefault("sleep", Sleeps())
    return BatchProcessor(projection, None, state=MemoryState(projection), **kwargs)


def run(processor: BatchProcessor, records: Sequence[RawRecord], size: int) -> list[BatchOutcome]:
    return [processor.process(records[i:i + size]) for i in range(0, len(records), size)]


def reference() -> dict[str, list[dict[str, Any]]]:
    projection = InMemoryProjection()
    projection.apply_batch([SourceRecord(EVENTS_TOPIC, 0, i, e) for i, e in enumerate(EVENTS)])
    return projection.snapshot()


def derived_events(outcomes: Sequence[BatchOutcome], topic: str) -> dict[str, Any]:
    """Derived events by id (a re-emission has the same id)."""
    return {
        event.id: event
        for outcome in outcomes
        for out in outcome.outputs
        if out.topic == topic
        for event in [decode(out.value)]
    }


def test_the_read_models_equal_the_projections_own() -> None:
    projection = InMemoryProjection()
    outcomes = run(processor_for(projection), RECORDS, 25)
    assert projection.snapshot() == reference()
    assert sum(o.applied for o in outcomes) == len(EVENTS)
    assert not any(o.dead_letters for o in outcomes)


def test_a_batch_processed_twice_adds_nothing_and_derives_the_same_records() -> None:
    projection = InMemoryProjection()
    processor = processor_for(projection)
    first = processor.process(RECORDS)
    second = processor.process(RECORDS)
    assert (second.applied, second.duplicates) == (0, len(EVENTS))
    assert projection.snapshot() == reference()
    assert [o.value for o in second.outputs] == [o.value for o in first.outputs]


def test_derived_records_describe_the_turns_and_the_closed_sessions() -> None:
    outcomes = run(processor_for(InMemoryProjection()), RECORDS, 10)
    turns = derived_events(outcomes, "turnlog.turns")
    sessions = derived_events(outcomes, "turnlog.sessions")
    assert len(turns) == 7  # 4 + 1 + 2 answered turns
    assert {(e.sessionid, e.data.status) for e in sessions.values()} == {
        ("sess_tutor_happy", "closed"), ("sess_tutor_failed", "failed"),
        ("sess_support_handoff", "closed"),
    }  # fmt: skip
    by_turn = {(e.sessionid, e.data.turn_id): e for e in turns.values()}
    tools_turn = by_turn["sess_tutor_happy", "turn_2"].data
    assert tools_turn.tool_call_count == 2
    assert tools_turn.e2e_latency == 1.35
    assert tools_turn.end_of_turn_delay == 0.3  # from the user message
    assert tools_turn.language == "en"
    assert by_turn["sess_tutor_happy", "turn_3"].data.interrupted is True
    happy = next(e for e in sessions.values() if e.sessionid == "sess_tutor_happy").data
    assert (happy.turn_count, happy.interruption_count, happy.tool_call_count) == (4, 1, 2)


def test_shuffled_sessions_give_the_same_read_models() -> None:
    import random

    shuffled = RECORDS[:]
    random.Random(7).shuffle(shuffled)
    projection = InMemoryProjection()
    run(processor_for(projection), shuffled, 13)
    assert projection.snapshot() == reference()


def test_bad_records_go_to_the_dlq_and_every_good_one_is_projected() -> None:
    good = [e for copy in range(4) for e in renamed(EVENTS, f"~{copy}")]
    records = as_raw(mixed_bodies(good))
    projection = InMemoryProjection()
    outcomes = run(processor_for(projection), records, 50)
    letters = [letter for o in outcomes for letter in o.dead_letters]
    assert sorted(letter.reason for letter in letters) == sorted(EXPECTED_REASON.values())
    assert sum(o.applied for o in outcomes) == len(good)
    dlq = [out for o in outcomes for out in o.outputs if out.topic == "turnlog.events.dlq"]
    assert len(dlq) == len(BAD_KINDS)
    for out in dlq:
        headers = decoded_headers(out.headers)
        source = next(r for r in records if (r.partition, r.offset) == (
            int(headers["turnlog-dlq-source-partition"]),
            int(headers["turnlog-dlq-source-offset"]),
        ))  # fmt: skip
        assert out.value == source.value  # the original bytes
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
    assert {json.loads(letter.record.value or b"")["id"] for letter in outcome.dead_letters} \
        == poisoned
    assert {letter.reason for letter in outcome.dead_letters} == {"projection_failed"}
    assert {letter.stage for letter in outcome.dead_letters} == {"postgres"}
    assert outcome.applied == len(EVENTS) - 2
    assert projection.calls < 30  # bisection, not one call per event


class UnknowingProjection(InMemoryProjection):
    """Knows no `tools.executed` events (a catalog newer than the projector)."""

    def apply_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        for r in records:
            if r.event.type == "turnlog.tools.executed.v1":
                raise UnhandledEventError(r.event.type, event_id=r.event.id,
                                          session_id=r.event.sessionid)
        return super().apply_batch(records)


def test_an_unhandled_type_is_pinpointed_by_its_event_id() -> None:
    outcome = processor_for(UnknowingProjection()).process(RECORDS)
    tools = [e for e in EVENTS if e.type == "turnlog.tools.executed.v1"]
    assert len(outcome.dead_letters) == len(tools)
    assert {letter.reason for letter in outcome.dead_letters} == {"unhandled_type"}
    assert outcome.applied == len(EVENTS) - len(tools)


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


def test_a_retryable_failure_is_retried_with_growing_pauses() -> None:
    sleeps = Sleeps()
    projection = FlakyProjection(failures=3)
    outcome = processor_for(projection, sleep=sleeps).process(RECORDS)
    assert outcome.applied == len(EVENTS)
    assert outcome.retries == 3
    assert sleeps.calls == [0.2, 0.4, 0.8]


def test_a_sink_that_stays_down_fails_the_batch_without_dead_letters() -> None:
    projection = FlakyProjection(failures=100)
    processor = processor_for(projection, retry=RetryPolicy(attempts=3))
    with pytest.raises(SinkUnavailableError) as failure:
        processor.process(RECORDS)
    assert failure.value.sink == "postgres"
    assert projection.snapshot() == InMemoryProjection().snapshot()


def test_a_broken_database_is_not_blamed_on_the_events() -> None:
    projection = FlakyProjection(failures=100, retryable=False)  # e.g. a missing table
    with pytest.raises(SinkUnavailableError):
        processor_for(projection).process(RECORDS)
    assert projection.failures == 99  # one attempt, no bisection


class PoisonedClickHouse:
    """The `write_batch` of a ClickHouse projection that refuses one event's value."""

    def __init__(self, poisoned: str) -> None:
        self.poisoned = poisoned
        self.written: list[int] = []

    def write_batch(self, records: Sequence[SourceRecord]) -> int:
        from turnlog.projections.clickhouse.store import QueryFailedError

        if any(r.event.id == self.poisoned for r in records):
            raise QueryFailedError("Code: 53. Type mismatch", code=53)
        self.written.extend(r.offset for r in records)
        return len(records)


def test_clickhouse_isolates_its_own_bad_event_after_postgres(tmp_path: Any) -> None:
    from turnlog.streams.journal import WriteJournal

    projection = InMemoryProjection()
    clickhouse = PoisonedClickHouse(EVENTS[50].id)
    journal = WriteJournal(tmp_path / "journal.json", database="db")
    processor = BatchProcessor(
        projection, clickhouse, state=MemoryState(projection),  # type: ignore[arg-type]
        journal=journal, sleep=Sleeps(),
    )  # fmt: skip
    outcome = processor.process(RECORDS)
    assert [letter.stage for letter in outcome.dead_letters] == ["clickhouse"]
    assert outcome.applied == len(EVENTS)  # PostgreSQL took it
    assert outcome.clickhouse_written == len(EVENTS) - 1
    assert journal.pending() is None  # every write finished


class EventsTable:
    """The `events` table of a fake ClickHouse: which events it holds."""

    def __init__(self) -> None:
        self.keys: set[tuple[str, int]] = set()

    def query(self, sql: str, **kwargs: Any) -> list[tuple[str, int]]:
        return sorted(self.keys)


class HalfWayClickHouse:
    """A ClickHouse projection whose writes fail after their first insert (the server
    went away mid-write) `failures` times; `writes` lists each write's records."""

    database = "db"

    def __init__(self, failures: int) -> None:
        self.store = EventsTable()
        self.failures = failures
        self.writes: list[list[tuple[int, int]]] = []

    def write_batch(self, records: Sequence[SourceRecord]) -> int:
        from turnlog.projections.clickhouse.store import QueryFailedError

        self.writes.append(sorted((r.partition, r.offset) for r in records))
        self.store.keys |= {r.key for r in records}  # `events` took them
        if self.failures:
            self.failures -= 1
            raise QueryFailedError("Code: 210. Connection reset by peer", code=210)
        return len(records)


def test_a_batch_processed_again_first_finishes_its_unfinished_write(tmp_path: Any) -> None:
    from turnlog.streams.journal import WriteJournal

    projection = InMemoryProjection()
    clickhouse = HalfWayClickHouse(failures=1)
    journal = WriteJournal(tmp_path / "journal.json", database="db")
    processor = BatchProcessor(
        projection, clickhouse, state=MemoryState(projection),  # type: ignore[arg-type]
        journal=journal, retry=RetryPolicy(attempts=1), sleep=Sleeps(),
    )  # fmt: skip
    with pytest.raises(SinkUnavailableError):
        processor.process(RECORDS)
    assert journal.pending() is not None
    again = processor.process(RECORDS)  # what the worker does with a failed batch
    assert again.duplicates == len(EVENTS)  # PostgreSQL committed it the first time
    assert clickhouse.writes == [clickhouse.writes[0]] * 2  # same records: same tokens
    assert journal.pending() is None


def test_the_two_stages_and_decoding_ahead_equal_one_process_call() -> None:
    """What the batch engine does (decode ahead in chunks, PostgreSQL of batch n+1
    before ClickHouse of batch n) gives what `process` gives, dead letters included."""
    good = [e for copy in range(2) for e in renamed(EVENTS, f"~{copy}")]
    records = as_raw(mixed_bodies(good))
    reference_projection = InMemoryProjection()
    whole = processor_for(reference_projection)
    expected = [whole.process(records[i:i + 40]) for i in range(0, len(records), 40)]

    projection = InMemoryProjection()
    staged = processor_for(projection)
    batches = []
    for i in range(0, len(records), 40):
        decoded = decode_records(records[i:i + 20])
        decoded.extend(decode_records(records[i + 20:i + 40]))
        batches.append(decoded)
    written = [staged.write_postgres(batch) for batch in batches]
    outcomes = [staged.write_clickhouse(w) for w in written]
    assert projection.snapshot() == reference_projection.snapshot()
    assert [_summary(o) for o in outcomes] == [_summary(o) for o in expected]
    # a stage repeated (a failed attempt) starts from what `write_postgres` returned
    again = staged.write_clickhouse(written[0])
    assert _summary(again) == _summary(outcomes[0])
    assert written[0].outcome.outputs == []


def _summary(outcome: BatchOutcome) -> tuple[Any, ...]:
    return (outcome.consumed, outcome.applied, outcome.duplicates,
            [(d.reason, d.record.offset) for d in outcome.dead_letters],
            [(o.topic, o.key) for o in outcome.outputs])  # fmt: skip
