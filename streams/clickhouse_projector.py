"""The ClickHouse analytics as a `Projector`: each batch is one insert of the events as
published (ClickHouse builds the rows, `projections.clickhouse.writer`), then the next
offset of every partition of the batch (`positions`), which is where a partition starts.

Exactness does not depend on the positions: the tables deduplicate by event identity and
the summing rollups read them deduplicated, so a batch applied again, cut differently, or
an event the log holds twice changes no answer. An event ClickHouse refuses is isolated
(bisection) and dead-lettered with stage `clickhouse` before `apply` returns. chDB
sessions stay on one thread: every store call runs on this projector's own thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

from turnlog.projections.clickhouse.migrate import apply_retention, migrate_clickhouse
from turnlog.projections.clickhouse.store import (
    AnalyticsStore,
    AnalyticsStoreError,
    QueryFailedError,
    StoreLockedError,
    connect,
)
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.streams.config import redact_url
from turnlog.streams.dlq import dead_letter_record
from turnlog.streams.errors import (
    DependencyUnavailableError,
    SinkUnavailableError,
    StartupError,
)
from turnlog.streams.isolate import QUICK_RETRIES, apply_isolating
from turnlog.streams.metrics import sample_freshness
from turnlog.streams.projector import Applied, DecodedBatch, Deliver
from turnlog.streams.records import STAGE_CLICKHOUSE
from turnlog.streams.sinks import clickhouse_sink, letter_for

logger = logging.getLogger("turnlog.streams.clickhouse")

T = TypeVar("T")

class ClickHouseProjector:
    """See the module doc."""

    name = "clickhouse"
    topic: str | None = None
    dead_letters_decode = False
    min_batch_interval = 0.5
    """Seconds between the starts of two batches: every insert makes parts in each table
    its views feed, and merging many small parts costs more CPU than the wait costs
    freshness."""

    def __init__(self, *, url: str, database: str, group: str, dlq_topic: str,
                 retention_days: int | None = None) -> None:  # fmt: skip
        self.url = url
        self.retention_days = retention_days
        self.database = database
        self.group = group
        self.dlq_topic = dlq_topic
        self._where = f"ClickHouse at {redact_url(url)}"
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog-ch")
        self._store: AnalyticsStore | None = None
        self._projection: ClickHouseProjection | None = None

    @property
    def store(self) -> AnalyticsStore:
        """The opened store (after `start`), e.g. for the analysts' query endpoint."""
        if self._store is None:
            raise RuntimeError("the ClickHouse projector has not started")
        return self._store

    async def _on_thread(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def start(self) -> None:
        await self._on_thread(self._open)

    def _open(self) -> None:
        if self._projection is not None:
            return
        try:
            store = self._store or connect(self.url)
        except StoreLockedError as error:  # e.g. the launcher applying DDL: it lets go
            raise DependencyUnavailableError(str(error), dependency=self._where) from error
        except AnalyticsStoreError as error:
            if self.url.startswith("chdb:"):  # a bad path, another folder opened: no wait helps
                raise StartupError(f"{self._where}: {error}") from error
            raise self._unavailable(error) from error
        self._store = store
        try:
            applied = migrate_clickhouse(store, database=self.database)
        except QueryFailedError as error:
            if error.code is None:  # no answer from the server
                raise self._unavailable(error) from error
            raise StartupError(
                f"{self._where}: migrating {self.database!r} failed: {error}"
            ) from error
        except (AnalyticsStoreError, OSError) as error:
            raise self._unavailable(error) from error
        if applied:
            logger.info("migrated %s: %s", self.database, ", ".join(m.name for m in applied))
        if self.retention_days is not None:
            tables = apply_retention(store, self.database, days=self.retention_days)
            logger.info("analytics retention %d days on %s", self.retention_days, tables)
        self._projection = ClickHouseProjection(store, database=self.database)

    def _unavailable(self, error: BaseException) -> DependencyUnavailableError:
        return DependencyUnavailableError(f"{self._where}: {error}", dependency=self._where)

    def _opened(self) -> ClickHouseProjection:
        if self._projection is None:
            self._open()
        if self._projection is None:
            raise RuntimeError("the ClickHouse projection did not open")
        return self._projection

    async def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        stored = await self._on_thread(self._read_positions)
        return {tp: stored[tp] for tp in partitions if tp in stored}

    def _read_positions(self) -> dict[tuple[str, int], int]:
        try:
            return self._opened().positions()
        except (AnalyticsStoreError, OSError) as error:
            raise self._unavailable(error) from error

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Nothing is kept per partition (positions are re-read on assignment)."""

    async def apply(self, batch: DecodedBatch, deliver: Deliver) -> Applied:
        applied = await self._on_thread(self._insert, batch)
        if applied.dead_letters:
            now = datetime.now(UTC)
            await deliver(
                [dead_letter_record(d, topic=self.dlq_topic, at=now) for d in applied.dead_letters]
            )
        # past every record of the batch (refused ones' dead letters are out, undecodable
        # ones are another projection's), so a restart does not read them again
        await self._on_thread(self._record_positions, batch.next_offsets())
        return applied

    def _insert(self, batch: DecodedBatch) -> Applied:
        projection = self._opened()
        sources = [d.source for d in batch.events]
        pending = projection.pending(sources)
        sink = clickhouse_sink(projection.insert_events)
        try:
            outcome = apply_isolating(sink, pending, policy=QUICK_RETRIES, sleep=time.sleep)
        except SinkUnavailableError as error:
            raise self._unavailable(error) from error
        raw_of = {id(d.source): d.raw for d in batch.events}
        letters = [letter_for(raw_of[id(source)], error, STAGE_CLICKHOUSE)
                   for source, error in outcome.rejected]  # fmt: skip
        return Applied(
            events=len(pending) - len(letters),
            duplicates=len(sources) - len(pending),
            dead_letters=letters,
            freshness=sample_freshness(pending),
        )

    def _record_positions(self, offsets: dict[tuple[str, int], int]) -> None:
        try:
            self._opened().record_next_offsets(offsets)
        except (AnalyticsStoreError, OSError) as error:
            raise self._unavailable(error) from error

    async def stop(self) -> None:
        def close() -> None:
            if self._store is not None:
                self._store.close()
            self._store = self._projection = None

        await self._on_thread(close)
        self._thread.shutdown(wait=False)

