"""The PostgreSQL read models as a `Projector`: one transaction per batch holds the rows
and the next offset of every partition in it (`projections.postgres`), so the stored
offsets are where a partition starts, whoever owned it before. Several processes in one
group share the partitions; the ledger skips what another member applied already.

It is the projection that dead-letters records that do not decode (`dead_letters_decode`):
the others skip them, so a poison record is dead-lettered once. An event PostgreSQL
refuses is isolated and dead-lettered with stage `postgres`. Work runs on a thread of its
own (psycopg is synchronous), under the shared projection lock an online rebuild's swap
takes exclusively (`locks`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg

from turnlog.projections.postgres.errors import ProjectionWriteError
from turnlog.projections.postgres.writer import BatchResult, PostgresProjection
from turnlog.streams.config import redact_url
from turnlog.streams.dlq import dead_letter_record
from turnlog.streams.errors import DependencyUnavailableError, SinkUnavailableError
from turnlog.streams.isolate import QUICK_RETRIES, apply_isolating
from turnlog.streams.locks import shared_projection_lock
from turnlog.streams.metrics import sample_freshness
from turnlog.streams.projector import Applied, DecodedBatch, Deliver
from turnlog.streams.records import DeadLetter
from turnlog.streams.sinks import letter_for, postgres_sink

T = TypeVar("T")


class PostgresProjector:
    """See the module doc."""

    name = "postgres"
    topic: str | None = None
    dead_letters_decode = True
    min_batch_interval = 0.1
    """Seconds between the starts of two batches: under live load each batch's fixed
    costs (two round trips, the group commit) are shared by more events."""

    def __init__(self, *, dsn: str, schema: str, group: str, dlq_topic: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.group = group
        self.dlq_topic = dlq_topic
        self._where = f"PostgreSQL at {redact_url(dsn)}"
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog-pg")
        self._projection: PostgresProjection | None = None
        self._lock_conn: psycopg.Connection[Any] | None = None

    async def _on_thread(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def start(self) -> None:
        await self._on_thread(self._open)

    def _open(self) -> None:
        projection = PostgresProjection(self.dsn, schema=self.schema, consumer=self.group)
        try:
            projection.committed_offsets("-")
        except ProjectionWriteError as error:
            projection.close()
            cause = error.__cause__
            if isinstance(cause, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
                first_line = str(cause).splitlines()[0]
                raise DependencyUnavailableError(
                    f"schema {self.schema!r} is not migrated ({first_line}); `turnlog stack "
                    "up` migrates it", dependency=f"{self._where} (migrations)",
                ) from error  # fmt: skip
            raise self._unavailable(error) from error
        self._projection = projection

    def _unavailable(self, error: BaseException) -> DependencyUnavailableError:
        return DependencyUnavailableError(f"{self._where}: {error}", dependency=self._where)

    async def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        topics = sorted({topic for topic, _ in partitions})
        stored: dict[tuple[str, int], int] = {}
        for topic in topics:
            offsets = await self._on_thread(self._committed, topic)
            stored.update({(topic, p): o for p, o in offsets.items()})
        return {tp: stored[tp] for tp in partitions if tp in stored}

    def _committed(self, topic: str) -> dict[int, int]:
        try:
            return self._opened().committed_offsets(topic)
        except ProjectionWriteError as error:
            raise self._unavailable(error) from error

    def _opened(self) -> PostgresProjection:
        if self._projection is None:
            self._open()
        if self._projection is None:
            raise RuntimeError("the PostgreSQL projection did not open")
        return self._projection

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Nothing is kept per partition."""

    async def apply(self, batch: DecodedBatch, deliver: Deliver) -> Applied:
        applied: Applied
        letters: list[DeadLetter]
        applied, letters = await self._on_thread(self._apply, batch)
        if letters:
            now = datetime.now(UTC)
            await deliver([dead_letter_record(d, topic=self.dlq_topic, at=now) for d in letters])
        return applied

    def _apply(self, batch: DecodedBatch) -> tuple[Applied, list[DeadLetter]]:
        projection = self._opened()
        sources = [d.source for d in batch.events]
        try:
            with shared_projection_lock(self._lock()):
                outcome = apply_isolating(
                    postgres_sink(projection.apply_batch), sources,
                    policy=QUICK_RETRIES, sleep=time.sleep,
                )  # fmt: skip
                if batch.dead_letters or outcome.rejected:
                    # past what was not applied too (its dead letter goes out)
                    projection.save_offsets(batch.next_offsets())
        except (SinkUnavailableError, ProjectionWriteError, psycopg.OperationalError) as error:
            if isinstance(error, ProjectionWriteError) and not error.retryable:
                raise  # not the connection: waiting would not fix it
            self._drop_lock()
            raise self._unavailable(error) from error
        by_id = {id(d.source): d.raw for d in batch.events}
        letters = [letter_for(by_id[id(source)], error, "postgres")
                   for source, error in outcome.rejected]  # fmt: skip
        results: list[BatchResult] = outcome.results
        return Applied(
            events=sum(r.applied for r in results),
            duplicates=sum(r.skipped_duplicates for r in results),
            dead_letters=letters,
            freshness=sample_freshness(sources),
        ), letters

    def _lock(self) -> psycopg.Connection[Any]:
        conn = self._lock_conn
        if conn is None or conn.closed or conn.broken:
            conn = self._lock_conn = psycopg.connect(self.dsn, autocommit=True)
        return conn

    def _drop_lock(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None

    async def stop(self) -> None:
        def close() -> None:
            self._drop_lock()
            if self._projection is not None:
                self._projection.close()

        await self._on_thread(close)
        self._thread.shutdown(wait=False)


