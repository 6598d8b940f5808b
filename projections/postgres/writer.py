"""Apply batches of log events to the PostgreSQL read models, exactly once.

One batch is one transaction: claim the batch's (session_id, sequence) pairs in the
ledger (one statement, which also says which pairs were new), upsert the folded rows of
the new events (one statement per table), save the next offset of every (topic,
partition) the batch came from, commit. A crash anywhere before the commit leaves
nothing; a redelivered event finds its pair in the ledger and is skipped. The statements
go in pipeline mode: two round trips per batch (begin and claim; upserts, offsets and
commit), whatever the number of tables.

Synchronous psycopg: the work per batch is one short transaction of a few statements
plus CPU-bound folding in Python, so an event loop gains nothing; a Faust agent calls
`apply_batch` in a worker thread (`loop.run_in_executor`). Give it a `ConnectionPool`
when several threads share one instance; a single connection serves one thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from turnlog.projections.postgres import statements
from turnlog.projections.postgres.erasure import erased_among, without_erased
from turnlog.projections.postgres.errors import ProjectionWriteError
from turnlog.projections.postgres.fold import BatchRows
from turnlog.projections.postgres.rows import reads
from turnlog.projections.postgres.tables import TABLES
from turnlog.projections.records import SourceRecord
from turnlog.schemas import CloudEvent

logger = logging.getLogger("turnlog.projections.postgres")

Connection = psycopg.Connection[Any]
EventKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one `apply_batch` did."""

    applied: int
    """Events whose rows were written now."""
    skipped_duplicates: int
    """Events already applied by an earlier batch, or repeated within this one."""
    ignored: int = 0
    """Records the projection does not read (derived records; see `rows.NO_ROWS`)."""
    rows: Mapping[str, int] = field(default_factory=dict)
    """Rows upserted per table, after folding the batch (a session's events: one row)."""
    offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    """Next offset committed per (topic, partition)."""


@dataclass(slots=True)
class _Plan:
    """A batch prepared outside the transaction: pure work, no I/O."""

    events: dict[EventKey, CloudEvent[Any]] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    ignored: int = 0
    repeated: int = 0

    @classmethod
    def of(cls, records: Sequence[SourceRecord]) -> _Plan:
        plan = cls()
        events, offsets = plan.events, plan.offsets
        for record in records:
            position = (record.topic, record.partition)
            next_offset = record.offset + 1
            if offsets.get(position, 0) < next_offset:
                offsets[position] = next_offset
            event = record.event
            key = (event.sessionid, event.sequence)
            if not reads(event):
                plan.ignored += 1
            elif key in events:
                plan.repeated += 1
            else:
                events[key] = event
        return plan


def _params(events: Iterable[CloudEvent[Any]]) -> dict[str, list[list[Any]]]:
    rows = BatchRows()
    rows.add_all(events)
    return rows.params()


def write_offsets(
    cur: psycopg.Cursor[Any], statement: bytes | sql.Composed, consumer: str,
    offsets: Mapping[tuple[str, int], int],
) -> None:  # fmt: skip
    """Store `consumer`'s next offsets with `statement` (`statements.save_offsets`), in
    the caller's transaction; positions in one order, so two writers never deadlock."""
    positions = sorted(offsets)
    cur.execute(statement, (
        consumer,
        [topic for topic, _ in positions],
        [partition for _, partition in positions],
        [offsets[p] for p in positions],
    ))  # fmt: skip


class PostgresProjection:
    """The conversation read models in one schema, fed by one named consumer."""

    def __init__(
        self,
        target: Connection | ConnectionPool[Any] | str,
        *,
        schema: str = "public",
        consumer: str = "pg-projector",
        erasures_schema: str | None = None,
    ) -> None:
        """`target`: a connection (autocommit, or idle between batches), a pool, or a DSN
        (the projection then opens and owns its connection; `close` it).
        `erasures_schema`: where the live `erased_sessions` table is (a rebuild into
        another schema reads the live one); `schema` by default."""
        self.schema = schema
        self.erasures_schema = erasures_schema or schema
        self.consumer = consumer
        self._pool = target if isinstance(target, ConnectionPool) else None
        self._dsn = target if isinstance(target, str) else None
        self._conn: Connection | None = target if isinstance(target, psycopg.Connection) else None
        self._upserts = {
            name: statements.upsert(table, schema).as_bytes() for name, table in TABLES.items()
        }
        self._claim = statements.claim_events(schema).as_bytes()
        self._save_offsets = statements.save_offsets(schema).as_bytes()
        self._load_offsets = statements.load_offsets(schema).as_bytes()

    def apply_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Apply `records` in one transaction with their offsets; see the module doc.

        Raises `UnhandledEventError` before touching the database when an event has a type
        the projection does not know, and `ProjectionWriteError` (with `retryable`) when
        PostgreSQL fails; then nothing of the batch is committed."""
        if not records:
            return BatchResult(applied=0, skipped_duplicates=0)
        plan = _Plan.of(records)
        # Rows before the transaction, as if every event were new (the usual case): the
        # transaction then holds its locks for the statements only.
        params = _params(plan.events.values())
        with (
            self._translated(f"applying a batch of {len(records)} events"),
            self._connection() as conn,
            conn.pipeline(),
            conn.transaction(),
            conn.cursor() as cur,
        ):
            new_keys = self._claim_events(cur, plan.events)
            if len(new_keys) < len(plan.events):
                params = _params(plan.events[key] for key in new_keys)
            erased = erased_among(cur, self.erasures_schema, sorted({k[0] for k in new_keys}))
            if erased:
                params = without_erased(params, erased)
            rows = self._write_rows(cur, params)
            self._write_offsets(cur, plan.offsets)
        result = BatchResult(
            applied=len(new_keys),
            skipped_duplicates=plan.repeated + len(plan.events) - len(new_keys),
            ignored=plan.ignored,
            rows=rows,
            offsets=dict(plan.offsets),
        )
        logger.debug("batch applied", extra={"schema": self.schema, "result": result})
        return result

    def committed_offsets(self, topic: str) -> dict[int, int]:
        """Partition -> next offset to consume, as committed with the rows."""
        with (
            self._translated(f"reading the offsets of {topic}"),
            self._connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            cur.execute(self._load_offsets, (self.consumer, topic))
            return {int(p): int(o) for p, o in cur.fetchall()}

    def save_offsets(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Store next offsets without rows: past records the caller will not apply (dead
        letters). Never moves an offset backwards."""
        if not offsets:
            return
        with (
            self._translated("saving offsets"),
            self._connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            self._write_offsets(cur, offsets)

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as error:
            raise ProjectionWriteError(
                f"{doing} in schema {self.schema!r} failed: {error}",
                retryable=isinstance(error, psycopg.OperationalError),
            ) from error

    def _claim_events(
        self, cur: psycopg.Cursor[Any], ops: Mapping[EventKey, object]
    ) -> list[EventKey]:
        keys = sorted(ops)  # one lock order for every writer: no deadlock between two
        cur.execute(self._claim, ([k[0] for k in keys], [k[1] for k in keys]))
        claimed = {(str(s), int(q)) for s, q in cur.fetchall()}
        return [k for k in ops if k in claimed]

    def _write_rows(
        self, cur: psycopg.Cursor[Any], params: Mapping[str, list[list[Any]]]
    ) -> dict[str, int]:
        written: dict[str, int] = {}
        for name, arrays in params.items():
            cur.execute(self._upserts[name], arrays)
            written[name] = len(arrays[0])
        return written

    def _write_offsets(
        self, cur: psycopg.Cursor[Any], offsets: Mapping[tuple[str, int], int]
    ) -> None:
        write_offsets(cur, self._save_offsets, self.consumer, offsets)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
            return
        if self._conn is None or self._conn.closed:
            if self._dsn is None:
                raise ProjectionWriteError("the projection's connection is closed",
                                           retryable=False)
            self._conn = psycopg.connect(self._dsn, autocommit=True)
        if self._conn.info.transaction_status != TransactionStatus.IDLE:
            # a transaction of the caller's would turn ours into a savepoint: the batch
            # and its offsets would not commit when apply_batch returns
            raise ProjectionWriteError(
                "the projection's connection is inside a transaction; give it an idle "
                "(autocommit) connection", retryable=False)
        yield self._conn

    def close(self) -> None:
        """Close the connection the projection opened from a DSN (others are the caller's)."""
        if self._dsn is not None and self._conn is not None:
            self._conn.close()

    def __enter__(self) -> PostgresProjection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
