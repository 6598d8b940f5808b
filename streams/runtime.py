"""The worker's runtime: a `mode.Service` the Faust app starts before anything else (and
stops last), owning the sink thread, the processor, the metrics and query endpoints, and
the method each engine calls per batch: `project` (the batch engine, `streams.engine`),
`handle` (the Faust agent, `streams.agents`).

At-least-once, and never a lost batch: `project` returns only after the batch is in both
sinks and its dead letters and derived records are delivered (their send futures
awaited); then the engine commits it (the Faust agent: acknowledges it). A batch that
fails as a whole (a sink down, a failed delivery) is processed again, with growing
pauses, until it succeeds: the sinks make a repeat harmless. When the worker stops in the
middle of a batch, the batch is held back from the offset commit (the batch engine
simply does not commit it; the Faust agent: see `_hold_back`), so the next worker
processes it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import faust
import mode

from turnlog.projections.clickhouse.store import ChdbStore, exit_past_chdb_teardown
from turnlog.streams.config import StreamsSettings
from turnlog.streams.metrics import StreamsMetrics
from turnlog.streams.processor import BatchOutcome, BatchProcessor, DecodedBatch, PostgresWritten
from turnlog.streams.records import Headers, OutRecord, RawRecord
from turnlog.streams.startup import (
    Sinks,
    fetch_pending,
    open_sinks,
    start_metrics_server,
    start_query_endpoint,
    verify_topics,
)

logger = logging.getLogger("turnlog.streams.runtime")

T = TypeVar("T")

MAX_BATCH_PAUSE = 30.0
"""Longest pause between two attempts at a failed batch, seconds."""


class StreamsRuntime(mode.Service):
    """See the module doc."""

    def __init__(self, app: faust.App, settings: StreamsSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.settings = settings
        self.metrics = StreamsMetrics()
        self._executor: ThreadPoolExecutor | None = None
        self._clickhouse_executor: ThreadPoolExecutor | None = None
        self._sinks: Sinks | None = None
        self._metrics_server: Any = None
        self._endpoint: Any = None
        self._next_offsets: dict[int, int] = {}
        self._ready = False

    @property
    def processor(self) -> BatchProcessor:
        if self._sinks is None:
            raise RuntimeError("the streams runtime is not started")
        return self._sinks.processor

    async def on_start(self) -> None:
        settings = self.settings
        logger.info("starting the streams worker: %s", settings.describe())
        await verify_topics(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog-sinks")
        self._clickhouse_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="turnlog-clickhouse"
        )
        self._sinks = await self.in_sink_thread(open_sinks, settings)
        await self._finish_pending_write(self._sinks)
        self._metrics_server = start_metrics_server(settings, self.metrics.registry)
        self._endpoint = start_query_endpoint(settings, self._sinks.store)
        self._ready = True

    async def on_stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self._executor is not None:
            if self._sinks is not None:
                await self.in_sink_thread(self._sinks.processor.close)
            self._executor.shutdown(wait=True)
        if self._clickhouse_executor is not None:
            self._clickhouse_executor.shutdown(wait=True)
        if self._sinks is not None and isinstance(self._sinks.store, ChdbStore):
            # chDB's background threads may crash while its engine is destroyed at
            # interpreter exit (SIGSEGV in "BgSchPool"): end the process before that,
            # with the status the stop deserves, whichever entry point started it.
            failed = not self._ready or self.app.crashed
            atexit.register(exit_past_chdb_teardown, 1 if failed else 0)
        logger.info("the streams worker stopped")

    async def in_sink_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the sink thread (the one that owns the connections)."""
        if self._executor is None:
            raise RuntimeError("the streams runtime is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def in_clickhouse_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the ClickHouse thread (`write_clickhouse`, beside the
        sink thread's `write_postgres` of the next batch)."""
        if self._clickhouse_executor is None:
            raise RuntimeError("the streams runtime is not started")
        return await asyncio.get_running_loop().run_in_executor(
            self._clickhouse_executor, function, *args
        )

    async def _finish_pending_write(self, sinks: Sinks) -> None:
        pending = sinks.journal.pending()
        if pending is None:
            return
        logger.warning("finishing a ClickHouse write a crash left unfinished (%d records)",
                       pending.size)
        async with asyncio.timeout(120):
            records = await fetch_pending(self.settings, pending)
        if len(records) != pending.size:  # gone from Kafka (retention): tokens differ
            logger.warning("only %d of the %d records of the unfinished write are in Kafka",
                           len(records), pending.size)
        written = await self.in_sink_thread(sinks.clickhouse.write_batch, records)
        sinks.journal.done()
        logger.info("finished the unfinished ClickHouse write: %d events sent again", written)

    async def handle(self, events: Sequence[faust.types.EventT[Any]]) -> None:
        """Process one batch of the Faust agent; returns when it may be acknowledged."""
        records = [raw_record(event.message) for event in events]
        try:
            await self.project(records)
        except BaseException:
            _hold_back(events)
            raise
        for record in records:
            self._next_offsets[record.partition] = max(
                self._next_offsets.get(record.partition, 0), record.offset + 1
            )

    async def project(self, batch: Sequence[RawRecord] | DecodedBatch) -> BatchOutcome:
        """Process one batch until it is in both sinks and its outputs are delivered
        (processed again, with growing pauses, while it fails as a whole); counts it."""
        started = time.perf_counter()

        async def attempt() -> BatchOutcome:
            outcome = await self.in_sink_thread(self.processor.process, batch)
            await self._publish(outcome.outputs)
            return outcome

        outcome = await self._until_done(attempt, len(batch))
        self._count(outcome, started)
        return outcome

    async def write_postgres(self, batch: DecodedBatch) -> PostgresWritten:
        """The first stage of `project`, on the sink thread: PostgreSQL and the derived
        records (processed again, with growing pauses, while it fails as a whole)."""

        async def attempt() -> PostgresWritten:
            return await self.in_sink_thread(self.processor.write_postgres, batch)

        return await self._until_done(attempt, len(batch))

    async def write_clickhouse(self, written: PostgresWritten, *, started: float) -> BatchOutcome:
        """The second stage of `project`, on the ClickHouse thread: ClickHouse, then the
        outputs delivered; counts the batch (`started`: `time.perf_counter()` when its
        first stage began)."""

        async def attempt() -> BatchOutcome:
            outcome = await self.in_clickhouse_thread(self.processor.write_clickhouse, written)
            await self._publish(outcome.outputs)
            return outcome

        outcome = await self._until_done(attempt, written.outcome.consumed)
        self._count(outcome, started)
        return outcome

    def _count(self, outcome: BatchOutcome, started: float) -> None:
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.record(
            outcome, turns_topic=self.settings.turns_topic,
            sessions_topic=self.settings.sessions_topic,
        )  # fmt: skip
        if outcome.dead_letters:
            logger.warning("dead-lettered %d of %d records", len(outcome.dead_letters),
                           outcome.consumed)

    async def _until_done(self, attempt: Callable[[], Awaitable[T]], size: int) -> T:
        pause = 0.5
        while True:
            try:
                return await attempt()
            except Exception:
                self.metrics.batch_failures.inc()
                logger.exception(
                    "a batch of %d records failed as a whole; processing it again in %.1fs",
                    size, pause,
                )  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_BATCH_PAUSE)

    async def _publish(self, outputs: list[OutRecord]) -> None:
        """Send every output, then wait until Kafka has them all (acks=all)."""
        producer = self.app.producer
        pending = [
            await producer.send(out.topic, out.key, out.value, None, None, list(out.headers))
            for out in outputs
        ]
        await asyncio.gather(*pending)

    async def update_lag(self) -> None:
        """Set the lag gauge: per assigned partition of the events topic, its highwater
        minus the next offset to process."""
        consumer = self.app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic == self.settings.events_topic]
        if not assigned:
            self.metrics.set_lag({})
            return
        highwaters = await consumer.highwaters(*assigned)
        lag: dict[int, int] = {}
        for tp in assigned:
            done = self._next_offsets.get(tp.partition)
            if done is None:
                done = await consumer.position(tp) or 0
            lag[tp.partition] = max(int(highwaters.get(tp, 0)) - done, 0)
        self.metrics.set_lag(lag)


def raw_record(message: faust.types.Message) -> RawRecord:
    """The processor's view of a consumed Faust message."""
    return RawRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=_headers(message.headers),
        timestamp=message.timestamp,
    )


def _headers(headers: Any) -> Headers:
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), bytes(value or b"")) for name, value in items)


def _hold_back(events: Sequence[faust.types.EventT[Any]]) -> None:
    """Keep a batch that was not processed out of the offset commit.

    Faust's `take_events` acknowledges the buffered events in a `finally` when the loop
    body leaves, even by an exception or a cancellation (a stopping worker). A message
    already marked acked is skipped by that acknowledgement and never reaches the
    consumer's committed set, so the commit stops before the batch and the next worker
    reads it again."""
    now = time.monotonic()
    for event in events:
        message = event.message
        if not message.acked:
            message.acked = True
            message.time_out = now
