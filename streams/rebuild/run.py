"""One rebuild from start to swap; see the package doc for the steps and their reasons."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Final, TypeVar

import psycopg
import psycopg.errors
from rich.console import Console

from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.streams.checksum import TableDigest, compare_clickhouse, compare_postgres
from turnlog.streams.config import StreamsSettings
from turnlog.streams.locks import exclusive_projection_lock
from turnlog.streams.rebuild import targets
from turnlog.streams.rebuild.apply import ReplayProcessor
from turnlog.streams.rebuild.log import (
    LogReader,
    OffsetProgress,
    Offsets,
    lowest,
    progress_bar,
    ranges_between,
)
from turnlog.streams.rebuild.plan import (
    Names,
    RebuildError,
    RebuildOptions,
    RebuildRefusedError,
    RebuildReport,
    Target,
)

logger = logging.getLogger("turnlog.streams.rebuild")

T = TypeVar("T")

LOCK_TIMEOUT: Final = "60s"
"""How long to wait for the exclusive projection lock (live batches hold it shared)."""
UNLOCKED_ROUNDS: Final = 3
"""Catch-up rounds without the lock, while live processing moves on, so that what is left
for the locked round (live processing paused) is small."""


class Rebuild:
    """One run. `store`: the live ClickHouse store (required when the target has it)."""

    def __init__(self, settings: StreamsSettings, options: RebuildOptions, *,
                 store: AnalyticsStore | None, console: Console) -> None:  # fmt: skip
        if options.target.clickhouse and store is None:
            raise ValueError("a ClickHouse rebuild needs the ClickHouse store")
        self.settings = settings
        self.options = options
        self.target = options.target
        self.store = store
        self.console = console
        self.dsn = settings.postgres_dsn.get_secret_value()
        self.names = Names(settings.postgres_schema, settings.clickhouse_database, options.stamp)
        self.report = RebuildReport(self.names, options.target)
        self.reader = LogReader(settings.kafka_bootstrap, settings.events_topic)
        self.at: dict[str, Offsets] = {"both": {}, "postgres": {}}
        """Per processor, per partition: the next offset it has not processed. The
        PostgreSQL-only catch-up may run ahead of the processor with both sinks, which
        then gives PostgreSQL those records again (skipped as duplicates by its ledger)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog-rebuild")
        self._processors: dict[str, ReplayProcessor] = {}
        self._made: set[str] = set()
        self._exchanging = False

    async def blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` on the rebuild's one thread (psycopg, chDB, the processor)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def run(self) -> RebuildReport:
        started = time.monotonic()
        self.names.check()
        first, end = await self.reader.start()
        failed = True
        try:
            await self._rebuild(first, end)
            failed = False
        finally:
            await self.reader.stop()
            await self.blocking(self.close)
            await self.blocking(self.cleanup, failed)
            self._executor.shutdown()
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _rebuild(self, first: Offsets, end: Offsets) -> None:
        live_pg, live_ch = await self.blocking(self.live_offsets)
        if sum(end.values()) > sum(first.values()):
            self.check_live(live_pg, live_ch)
        await self.blocking(self.create_targets)
        limits = [end]
        limits += [live_pg] if self.target.postgres else []
        limits += [live_ch] if self.target.clickhouse else []
        self.at = {"both": dict(first), "postgres": dict(first)}
        await self.replay(lowest(*limits), "replaying the log")
        for _ in range(UNLOCKED_ROUNDS):
            caught_up = await self.catch_up(*await self.blocking(self.live_offsets))
            if caught_up < self.options.batch_size:
                break
        await self.locked_finish()

    def check_live(self, live_pg: Offsets, live_ch: Offsets) -> None:
        """A live projection that applied nothing of a non-empty log is a wrong setting
        (prefix, schema, database, consumer group), not something to swap in empty."""
        settings, names = self.settings, self.names
        if self.target.postgres and not live_pg:
            raise RebuildRefusedError(
                f"PostgreSQL schema {names.schema!r} has applied nothing of "
                f"{settings.events_topic} as consumer {settings.group('postgres')!r}: check "
                "TURNLOG_POSTGRES_SCHEMA, TURNLOG_TOPIC_PREFIX and "
                "TURNLOG_STREAMS_CONSUMER_GROUP (they must be the worker's)"
            )
        if self.target.clickhouse and not live_ch:
            raise RebuildRefusedError(
                f"ClickHouse database {names.database!r} has applied nothing of "
                f"{settings.events_topic}: check TURNLOG_CLICKHOUSE_DATABASE and "
                "TURNLOG_TOPIC_PREFIX (they must be the worker's)"
            )

    async def replay(self, stop: Offsets, label: str, *, processor: str = "both") -> int:
        """Process the log from where `processor` is up to `stop`; returns how many records."""
        ranges = ranges_between(self.at[processor], stop)
        progress = OffsetProgress(ranges)
        if progress.total == 0:
            return 0
        count = 0
        with progress_bar(self.console) as bar:
            task = bar.add_task(label, total=progress.total)
            async for batch in self.reader.batches(ranges, self.options.batch_size, progress):
                outcome = await self.blocking(self._processors[processor].process, batch)
                count += outcome.consumed
                self.report.dead_letters += len(outcome.dead_letters)
                progress.advance(batch)
                bar.update(task, completed=progress.completed)
            bar.update(task, completed=progress.total)
        for name in {processor, "postgres"}:  # PostgreSQL is in both processors
            reached = self.at[name]
            reached.update({p: max(reached.get(p, 0), b) for p, (_, b) in ranges.items()})
        self.report.replayed += count
        return count

    async def catch_up(self, live_pg: Offsets, live_ch: Offsets) -> int:
        """To what live processing has applied: with both sinks to ClickHouse's positions,
        then PostgreSQL alone to its offsets (further only when the worker's last
        ClickHouse write failed; see `RebuildOptions.settle_seconds`)."""
        primary = live_ch if self.target.clickhouse else live_pg
        count = await self.replay(primary, "catching up")
        if self.target is Target.BOTH:
            count += await self.replay(live_pg, "catching up PostgreSQL", processor="postgres")
        return count

    async def locked_finish(self) -> None:
        """The last catch-up and the swap (or the comparison), live processing paused."""
        conn = await self.blocking(self._lock_connection)
        lock = exclusive_projection_lock(conn)
        try:
            try:
                await self.blocking(lock.__enter__)
            except psycopg.errors.LockNotAvailable as error:
                raise RebuildError(
                    f"the projection lock stayed taken for {LOCK_TIMEOUT}: is a batch of the "
                    "worker stuck? (pg_locks, locktype 'advisory')"
                ) from error
            locked_at = time.monotonic()
            try:
                live_pg, live_ch = await self.blocking(self.live_offsets)
                if self.target.clickhouse:
                    live_ch = await self.settled_positions(live_pg, live_ch)
                self.report.caught_up_locked = await self.catch_up(live_pg, live_ch)
                if self.options.dry_run:
                    self.report.comparison = await self.blocking(self.compare, conn)
                else:
                    await self.blocking(self.swap, conn)
            finally:
                await self.blocking(lock.__exit__, None, None, None)
                self.report.lock_seconds = time.monotonic() - locked_at
        finally:
            await self.blocking(conn.close)

    async def settled_positions(self, live_pg: Offsets, live_ch: Offsets) -> Offsets:
        """ClickHouse positions once the worker's last ClickHouse write (it runs after its
        PostgreSQL transaction, outside the lock) has landed: they cover PostgreSQL's
        offsets, or stop moving for `settle_seconds`."""
        still_since = time.monotonic()
        while any(live_ch.get(p, 0) < offset for p, offset in live_pg.items()):
            if time.monotonic() - still_since >= self.options.settle_seconds:
                logger.warning(
                    "ClickHouse positions stay behind PostgreSQL's offsets; the "
                    "worker writes the difference again after the swap"
                )
                break
            await asyncio.sleep(0.1)
            _, now = await self.blocking(self.live_offsets)
            if now != live_ch:
                live_ch, still_since = now, time.monotonic()
        return live_ch

    # on the rebuild's thread ------------------------------------------------------------

    def _lock_connection(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")  # a live batch holds it ~1 s
        return conn

    def live_offsets(self) -> tuple[Offsets, Offsets]:
        """What live processing has applied: PostgreSQL's offsets (read for a ClickHouse
        rebuild too: they tell when the worker's ClickHouse write is done) and ClickHouse's
        positions."""
        topic, names = self.settings.events_topic, self.names
        pg = targets.postgres_offsets(self.dsn, schema=names.schema, topic=topic,
                                      consumer=self.settings.group("postgres"))  # fmt: skip
        ch: Offsets = {}
        if self.target.clickhouse and self.store is not None:
            ch = targets.clickhouse_positions(self.store, database=names.database, topic=topic)
        return pg, ch

    def create_targets(self) -> None:
        names = self.names
        self._made.add("rebuilt schema")
        migrate_postgres(self.dsn, schema=names.rebuilt_schema)
        postgres = PostgresProjection(self.dsn, schema=names.rebuilt_schema,
                                      consumer=self.settings.group("postgres"),
                                      erasures_schema=names.schema)  # fmt: skip
        clickhouse = None
        if self.target.clickhouse and self.store is not None:
            self._made.add("rebuilt database")
            migrate_clickhouse(self.store, database=names.rebuilt_database)
            if not self.options.dry_run:
                self._made.add("old database")
                migrate_clickhouse(self.store, database=names.old_database)
            clickhouse = ClickHouseProjection(self.store, database=names.rebuilt_database)
        self._processors = {
            "both": ReplayProcessor(postgres, clickhouse),
            "postgres": ReplayProcessor(postgres, None),
        }

    def compare(self, conn: psycopg.Connection[Any]) -> list[TableDigest]:
        names, digests = self.names, []
        if self.target.postgres:
            digests += compare_postgres(conn, names.schema, names.rebuilt_schema)
        if self.target.clickhouse and self.store is not None:
            digests += compare_clickhouse(self.store, names.database, names.rebuilt_database)
        return digests

    def swap(self, conn: psycopg.Connection[Any]) -> None:
        names = self.names
        if self.target.postgres:
            targets.swap_postgres(conn, names)
            self.report.kept.append(f"PostgreSQL schema {names.old_schema}")
        if self.target.clickhouse and self.store is not None:
            self._exchanging = True
            try:
                targets.exchange_tables(self.store, names)
            except RebuildError as error:
                if self.target.postgres:
                    raise RebuildError(
                        f"{error}. PostgreSQL was swapped: {names.schema} is "
                        f"the rebuild, {names.old_schema} the old"
                    ) from error
                raise
            self.report.kept.append(f"ClickHouse database {names.old_database}")
        self.report.swapped = True
        self.report.swapped_at = time.time()

    def cleanup(self, failed: bool) -> None:
        """Drop what is not wanted any more. Failed: what the rebuild made, except in
        ClickHouse once its exchange began. Done: the rebuild of a dry run, the scratch
        schema of a ClickHouse rebuild, the emptied rebuilt database, and the old
        projections unless kept."""
        names, made = self.names, self._made
        swapped, keep = self.report.swapped, self.options.keep_old
        touch_clickhouse = not (failed and self._exchanging)
        schemas: list[str] = []
        databases: list[str] = []
        scratch = failed or self.options.dry_run or not self.target.postgres
        if "rebuilt schema" in made and scratch:
            schemas.append(names.rebuilt_schema)
        if "rebuilt database" in made and touch_clickhouse:
            databases.append(names.rebuilt_database)
        if "old database" in made and touch_clickhouse and not (swapped and keep):
            databases.append(names.old_database)
        if swapped and not keep:
            schemas += [names.old_schema] if self.target.postgres else []
            self.report.kept.clear()
        for name in schemas:
            _logged(partial(targets.drop_schema, self.dsn, name), name)
        if self.store is not None:
            for name in databases:
                _logged(partial(targets.drop_database, self.store, name), name)

    def close(self) -> None:
        for processor in self._processors.values():
            processor.close()


def _logged(drop: Callable[[], None], name: str) -> None:
    try:
        drop()
    except Exception:
        logger.exception("could not drop %s; drop it by hand", name)
