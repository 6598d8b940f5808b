"""The batch processor: raw records in; read models written, dead letters and derived
records out. Consumer-agnostic, so the batch engine, the Faust agent, the benchmark's
plain aiokafka loop and the rebuild command share it.

`process` is synchronous and blocking (psycopg, chDB): call it from ONE dedicated thread
(`loop.run_in_executor` with a single-thread executor); the PostgreSQL connections and the
chDB session stay on that thread. Or in two stages, `write_postgres` (steps 1-2) on one
thread and `write_clickhouse` (step 3) on another, batches in order on each: then
PostgreSQL takes batch n+1 while ClickHouse takes batch n, which is sound because nothing
of step 3 is read by step 2, and step 3 of a batch still follows its step 2 (so the
duplicate check below holds). For each batch:

1. Decode every record (`schemas.decode`); a `SchemaError` makes a dead letter with the
   error's `reason`. `decode_records` does this step alone, on any thread: the batch
   engine decodes the next batch while the sink thread writes the current one.
2. Under the shared projection lock (`locks`), apply the decoded events to PostgreSQL
   (one transaction per batch, idempotent by its ledger), isolating any event it cannot
   take (`isolate`); then read back the rows of the turns and sessions the batch touched
   and build the derived records (`derived`).
3. Apply the events PostgreSQL took to ClickHouse (idempotent by insert tokens and
   positions; the write journal closes the crash gap, see `journal`), isolating likewise.
   A write an earlier attempt of this batch left unfinished is completed first, with the
   same records; and when PostgreSQL saw duplicates, the events ClickHouse already holds
   are left out (an event the log holds twice would otherwise enter the rollups twice).
   That needs the journal (no write left unfinished): without one, duplicates are written
   again, and only the deduplicating engines collapse them.

A sink that fails for the whole batch (unreachable after the retries, or broken) raises
`SinkUnavailableError`: the caller must not acknowledge the batch, and may process it
again (a retried batch adds nothing). Derived records are emitted for every turn and
closed session the batch touched, re-emitted ones included (same facts, same id).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.errors import UnhandledEventError
from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import (
    DLQ_TOPIC,
    SESSIONS_TOPIC,
    TURNS_TOPIC,
    ConversationItemAdded,
    SchemaError,
    ToolsExecuted,
    UserTranscribed,
    decode,
)
from turnlog.streams import derived
from turnlog.streams.dlq import dead_letter_record
from turnlog.streams.errors import SinkUnavailableError
from turnlog.streams.isolate import RetryPolicy, Sink, apply_isolating
from turnlog.streams.journal import WriteJournal
from turnlog.streams.records import (
    STAGE_CLICKHOUSE,
    STAGE_DECODE,
    STAGE_POSTGRES,
    DeadLetter,
    OutRecord,
    RawRecord,
)
from turnlog.streams.sinks import clickhouse_known, clickhouse_sink, postgres_sink
from turnlog.streams.state import ProjectionState, TurnKey

logger = logging.getLogger("turnlog.streams.processor")

__all__ = [
    "BatchOutcome", "BatchProcessor", "DecodedBatch", "PostgresWritten", "RawRecord",
    "decode_records",
]  # fmt: skip

R = TypeVar("R")


@dataclass(slots=True)
class BatchOutcome:
    """What one `process` call did."""

    consumed: int = 0
    """Records in the batch."""
    applied: int = 0
    """Events written to PostgreSQL for the first time."""
    duplicates: int = 0
    """Events PostgreSQL had applied already (a redelivery, or produced twice)."""
    ignored: int = 0
    """Derived records found in the log: the projections do not read them."""
    clickhouse_written: int = 0
    """Events sent to ClickHouse (those past its stored positions)."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outputs: list[OutRecord] = field(default_factory=list)
    """Records to produce: dead letters first, then derived records."""
    derived_failures: int = 0
    """Derived records that could not be built (logged; the batch goes on)."""
    sink_seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per sink, retries and isolation included."""
    freshness: dict[str, list[float]] = field(default_factory=dict)
    """Per sink, seconds from each event's time to when it became visible there."""
    retries: int = 0
    """Attempts repeated after a retryable sink failure."""


class BatchProcessor:
    """See the module doc. `clickhouse` None: PostgreSQL only (tests, tools)."""

    def __init__(
        self,
        postgres: PostgresProjection | InMemoryProjection,
        clickhouse: ClickHouseProjection | None,
        *,
        state: ProjectionState,
        topic_prefix: str = "",
        journal: WriteJournal | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen)
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.postgres = postgres
        self.clickhouse = clickhouse
        self.state = state
        self.journal = journal
        self.retry = retry
        self._sleep = sleep
        self._clock = clock
        self.dlq_topic = topic_prefix + DLQ_TOPIC
        self.turns_topic = topic_prefix + TURNS_TOPIC
        self.sessions_topic = topic_prefix + SESSIONS_TOPIC

    def process(self, batch: Sequence[RawRecord] | DecodedBatch) -> BatchOutcome:
        """Process one batch, raw or decoded already (`decode_records`, which any thread
        may run); see the module doc. Raises `SinkUnavailableError`."""
        return self.write_clickhouse(self.write_postgres(batch))

    def write_postgres(self, batch: Sequence[RawRecord] | DecodedBatch) -> PostgresWritten:
        """Steps 1 and 2 of `process`: decode (unless decoded), PostgreSQL, derived
        records. A consumer may run `write_clickhouse` of the batch before on another
        thread meanwhile (see the module doc); `write_clickhouse` of this batch follows."""
        decoded = batch if isinstance(batch, DecodedBatch) else decode_records(batch)
        outcome = BatchOutcome(consumed=len(decoded), dead_letters=list(decoded.dead_letters))
        with self.state.locked():
            projected = self._apply_postgres(decoded.events, outcome)
            derived_records = self._derive(projected, outcome)
        return PostgresWritten(outcome, projected, derived_records)

    def write_clickhouse(self, written: PostgresWritten) -> BatchOutcome:
        """Step 3 of `process`, and the outputs. Leaves `written` as it was, so a failed
        attempt may be repeated with it."""
        outcome = dataclasses.replace(
            written.outcome, dead_letters=list(written.outcome.dead_letters),
            sink_seconds=dict(written.outcome.sink_seconds),
            freshness=dict(written.outcome.freshness),
        )  # fmt: skip
        self._apply_clickhouse(written.events, outcome)
        now = self._clock()
        outcome.outputs = [
            dead_letter_record(letter, topic=self.dlq_topic, at=now)
            for letter in outcome.dead_letters
        ] + written.derived
        return outcome

    def close(self) -> None:
        self.state.close()
        if isinstance(self.postgres, PostgresProjection):
            self.postgres.close()

    def _apply_postgres(self, events: list[_Decoded], outcome: BatchOutcome) -> list[_Decoded]:
        sink = postgres_sink(self.postgres.apply_batch)
        kept, results = self._through(sink, events, outcome, started=time.perf_counter())
        for result in results:
            outcome.applied += result.applied
            outcome.duplicates += result.skipped_duplicates
            outcome.ignored += result.ignored
        return kept

    def _apply_clickhouse(self, events: list[_Decoded], outcome: BatchOutcome) -> None:
        if self.clickhouse is None or not events:
            return
        started = time.perf_counter()
        self._finish_pending_write(self.clickhouse, events)
        if outcome.duplicates and self.journal is not None:
            events = self._not_in_clickhouse(self.clickhouse, events)
        sink = clickhouse_sink(self._write_clickhouse)
        _kept, results = self._through(sink, events, outcome, started=started)
        outcome.clickhouse_written = sum(results)

    def _through(
        self, sink: Sink[SourceRecord, R], events: list[_Decoded], outcome: BatchOutcome,
        *, started: float,
    ) -> tuple[list[_Decoded], list[R]]:  # fmt: skip
        """Apply `events` to `sink`, isolating what it refuses; the events it took."""
        applied = apply_isolating(
            sink, [d.source for d in events], policy=self.retry, sleep=self._sleep
        )
        outcome.sink_seconds[sink.name] = time.perf_counter() - started
        outcome.retries += applied.retries
        by_source = {id(d.source): d for d in events}
        for source, error in applied.rejected:
            outcome.dead_letters.append(_letter(by_source[id(source)].raw, error, sink.name))
        rejected = {id(source) for source, _ in applied.rejected}
        kept = [d for d in events if id(d.source) not in rejected]
        outcome.freshness[sink.name] = self._freshness(kept)
        return kept, applied.results

    def _finish_pending_write(
        self, clickhouse: ClickHouseProjection, events: list[_Decoded]
    ) -> None:
        """Complete a ClickHouse write this batch left unfinished in an earlier attempt
        (the caller processes a failed batch again): the same records, so the same
        tokens. Only then may `_not_in_clickhouse` trust the `events` table."""
        pending = self.journal.pending() if self.journal is not None else None
        if pending is None:
            return
        wanted = {
            (topic, partition, offset)
            for (topic, partition) in pending.offsets
            for offset in pending.offset_set(topic, partition)
        }
        records = [
            d.source for d in events
            if (d.source.topic, d.source.partition, d.source.offset) in wanted
        ]  # fmt: skip
        if len(records) != len(wanted):
            raise SinkUnavailableError(
                "an unfinished ClickHouse write is not part of this batch; restart the "
                "worker, which completes it from Kafka before it consumes", sink=STAGE_CLICKHOUSE,
            )  # fmt: skip
        try:
            clickhouse.write_batch(records)
        except Exception as error:
            raise SinkUnavailableError(
                f"completing an unfinished ClickHouse write failed: {error}",
                sink=STAGE_CLICKHOUSE,
            ) from error
        if self.journal is not None:
            self.journal.done()

    def _not_in_clickhouse(
        self, clickhouse: ClickHouseProjection, events: list[_Decoded]
    ) -> list[_Decoded]:
        """The events ClickHouse does not hold yet (see `sinks.clickhouse_known`). Sound
        because no write is left unfinished (see `journal`): an event in `events` is in
        every table it has rows in."""
        try:
            known = clickhouse_known(clickhouse, (d.source.key for d in events))
        except Exception as error:
            raise SinkUnavailableError(
                f"asking ClickHouse for the batch's duplicates failed: {error}",
                sink=STAGE_CLICKHOUSE,
            ) from error
        return [d for d in events if d.source.key not in known]

    def _write_clickhouse(self, records: list[SourceRecord]) -> int:
        if self.clickhouse is None:
            return 0
        if self.journal is not None:
            self.journal.begin(records)
        written = self.clickhouse.write_batch(records)
        if self.journal is not None:
            self.journal.done()
        return written

    def _derive(self, events: list[_Decoded], outcome: BatchOutcome) -> list[OutRecord]:
        turns: set[TurnKey] = set()
        sessions: set[str] = set()
        for item in events:
            event = item.source.event
            sessions.add(event.sessionid)
            if _completes_a_turn(event.data) and event.data.turn_id is not None:
                turns.add((event.sessionid, event.data.turn_id))
        try:
            turn_rows = self.state.turns(turns)
            session_rows = self.state.closed_sessions(sessions)
        except Exception as error:  # the database, not the data: process the batch again
            raise SinkUnavailableError(
                f"reading the derived records' rows failed: {error}", sink=STAGE_POSTGRES
            ) from error
        records: list[OutRecord] = []
        builds: list[tuple[Callable[[Any], Any], Any, str]] = [
            *((derived.turn_completed, rows, self.turns_topic) for rows in turn_rows),
            *((derived.session_summarized, rows, self.sessions_topic) for rows in session_rows),
        ]
        for build, rows, topic in builds:
            try:
                event = build(rows)
            except Exception:
                outcome.derived_failures += 1
                logger.exception("cannot derive a record for %s", topic,
                                 extra={"session_id": rows.session.get("session_id")})
                continue
            if event is not None:
                records.append(derived.derived_record(event, topic=topic))
        return records

    def _freshness(self, events: list[_Decoded]) -> list[float]:
        now = self._clock()
        return [(now - d.source.event.time).total_seconds() for d in events]


@dataclass(frozen=True, slots=True)
class _Decoded:
    raw: RawRecord
    source: SourceRecord


@dataclass(frozen=True, slots=True)
class PostgresWritten:
    """A batch `write_postgres` has written: what `write_clickhouse` needs."""

    outcome: BatchOutcome
    events: list[_Decoded]
    """The events PostgreSQL took (the rest are dead letters)."""
    derived: list[OutRecord]


@dataclass(slots=True)
class DecodedBatch:
    """Records decoded ahead of `process` (step 1 of the module doc), so a consumer can
    decode the next batch while the sinks write the current one. Never changed by
    `process`, so a failed batch is processed again from the same `DecodedBatch`."""

    records: list[RawRecord] = field(default_factory=list)
    events: list[_Decoded] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """The records `decode` refused."""

    def __len__(self) -> int:
        return len(self.records)

    def extend(self, other: DecodedBatch) -> None:
        """Append a batch decoded later (its records come after this one's)."""
        self.records.extend(other.records)
        self.events.extend(other.events)
        self.dead_letters.extend(other.dead_letters)


def decode_records(records: Sequence[RawRecord]) -> DecodedBatch:
    """Decode `records` (`schemas.decode`); a `SchemaError` makes a dead letter. Pure:
    any thread may run it."""
    batch = DecodedBatch(records=list(records))
    events, letters = batch.events, batch.dead_letters
    for record in records:
        try:
            event = decode(record.value or b"")
        except SchemaError as error:
            letters.append(DeadLetter(
                record, error.reason, type(error).__name__, error.message, STAGE_DECODE
            ))  # fmt: skip
            continue
        source = SourceRecord(record.topic, record.partition, record.offset, event)
        events.append(_Decoded(record, source))
    return batch


def _completes_a_turn(data: Any) -> bool:
    """Facts that may complete a turn's record: its messages, its tool batches, its final
    transcript (arriving late, they add to a turn already answered)."""
    if isinstance(data, UserTranscribed):
        return data.is_final
    return isinstance(data, ConversationItemAdded | ToolsExecuted)


def _letter(record: RawRecord, error: BaseException, stage: str) -> DeadLetter:
    reason = "unhandled_type" if isinstance(error, UnhandledEventError) else "projection_failed"
    return DeadLetter(record, reason, type(error).__name__, str(error), stage)
