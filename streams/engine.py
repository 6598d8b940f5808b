"""The batch engine (the default, `TURNLOG_STREAMS_ENGINE=batch`): a greedy batch loop
over aiokafka, run as a `mode.Service` of the Faust app, so Faust stays the service
container (`python -m turnlog.streams worker`, `faust -A turnlog.streams.app worker`) while
batches skip Faust's per-event stream machinery (about 100 µs an event; see README).

A batch is what has been fetched, up to `batch_size`; the engine waits up to
`batch_within` only while nothing has. Three things overlap: the engine gathers the
next batch from the fetcher and decodes it on a thread of its own (`decode_records`);
the sink thread writes a batch to PostgreSQL (`write_postgres`: its rows, its derived
records); the ClickHouse thread writes the batch before (`write_clickhouse`), then
its outputs are delivered and its offsets committed. Once PostgreSQL is done with a
batch the next goes at once, so under load batches grow by themselves, and under light
load an event waits for little more than the PostgreSQL write in flight.

At-least-once: the offsets of a batch are committed, explicitly, only after both sinks
have it and its outputs are delivered, batch after batch, in order. Stopping (SIGTERM)
finishes the batches in flight and commits them; records gathered for the next batch
are dropped uncommitted. Rebalance (`_Rebalance`): before partitions are revoked the
batches in flight are finished and committed, and everything gathered is dropped (Kafka
hands the partitions out again from the committed offsets). Batches that cannot finish
in time (a sink down) are abandoned uncommitted and processed again by whoever owns
their partitions next: the sinks make the repeat harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from turnlog.streams.processor import DecodedBatch, decode_records
from turnlog.streams.rebuild.log import raw_record
from turnlog.streams.records import RawRecord
from turnlog.streams.runtime import StreamsRuntime
from turnlog.streams.startup import FETCH_BYTES

logger = logging.getLogger("turnlog.streams.engine")

LAG_INTERVAL: Final = 5.0
"""Seconds between two updates of the consumer lag gauge."""
POLL_SECONDS: Final = 0.005
"""While a batch is in flight, how often the engine looks for more fetched records (and
whether the batch is done)."""
FINISH_TIMEOUT: Final = 60.0
"""Seconds a stop or a rebalance waits for the batches in flight before abandoning them
(uncommitted)."""


class BatchEngine(mode.Service):
    """See the module doc."""

    def __init__(self, runtime: StreamsRuntime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.settings = runtime.settings
        self._consumer: AIOKafkaConsumer | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._inflight: asyncio.Task[None] | None = None
        """The latest batch's completion (it waits for the batches before it)."""
        self._batches: set[asyncio.Task[None]] = set()
        """Every batch in flight: at most two, one in each stage."""
        self._postgres_busy: asyncio.Future[None] | None = None
        """Done once the latest batch has left the PostgreSQL stage."""
        self._epoch = 0
        """Counts revocations: a batch gathered in an earlier epoch is dropped."""
        self._rebalancing = False
        """Between a revocation and the next assignment."""
        self._expected: dict[TopicPartition, int] = {}
        """Per assigned partition, the next offset to hand to the sinks (see `_contiguous`)."""
        self._rewound: dict[TopicPartition, int] = {}
        """Per partition, the offset it was last fetched again from (see `_contiguous`)."""
        self._done: dict[TopicPartition, int] = {}
        """Next offset to process per partition (committed)."""
        self._loop_task: asyncio.Future[None] | None = None
        self.committed = (0, 0)
        """Batches and records this engine has committed."""

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the batch engine is not started")
        return self._consumer

    async def on_start(self) -> None:
        settings = self.settings
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog-decode")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.consumer_group,
            client_id=f"{settings.consumer_group}-batch",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=FETCH_BYTES,
            session_timeout_ms=int(settings.session_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, settings.session_timeout / 3) * 1000),
            # how long the group waits for this worker to finish its batches in flight
            # when partitions are revoked (aiokafka's default, the session timeout, would
            # evict it meanwhile)
            rebalance_timeout_ms=int((FINISH_TIMEOUT + settings.session_timeout) * 1000),
        )  # fmt: skip
        consumer.subscribe([settings.events_topic], listener=_Rebalance(self))
        await consumer.start()
        self._consumer = consumer
        self._loop_task = self.add_future(self._consume())

    async def on_stop(self) -> None:
        if self._loop_task is not None and not self._loop_task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), FINISH_TIMEOUT)
            except TimeoutError:
                logger.error("the batches in flight did not finish within %.0fs; they are "
                             "left uncommitted for the next worker", FINISH_TIMEOUT)  # fmt: skip
                self._loop_task.cancel()
            except Exception:
                logger.exception("the batch loop failed")
        if self._consumer is not None:
            await self._consumer.stop()  # leaves the group: the partitions move at once
        logger.info("the batch engine stopped: %d batches of %d records committed",
                    *self.committed)  # fmt: skip
        if self._decoder is not None:
            self._decoder.shutdown(wait=True)

    async def _consume(self) -> None:
        """The loop: gather the next batch while the sinks write the ones in flight."""
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping():
                epoch, batch = await self._gather()
                await self._stage_free()
                if self._stopping():
                    break  # gathered, never processed: never committed
                if batch is None or self._rebalancing or epoch != self._epoch:
                    continue  # dropped: fetched again, from the committed offsets
                first, last = offset_bounds(batch.records)
                await self._learn_starts(first)
                stale = self._rebalancing or epoch != self._epoch
                if stale or not self._contiguous(first, last):
                    continue
                self._postgres_busy = loop.create_future()
                task = asyncio.ensure_future(self._complete(
                    batch, {tp: o + 1 for tp, o in last.items()}, after=self._inflight,
                    postgres=self._postgres_busy,
                ))  # fmt: skip
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
                self._inflight = task
            await self._wait_inflight()
        except asyncio.CancelledError:
            self._abandon()
            raise
        except Exception as error:
            logger.exception("the batch loop failed")
            await self.crash(error)

    def _free(self) -> bool:
        """Whether a batch may enter the PostgreSQL stage: the latest batch has left
        it, and the one before has left ClickHouse (so the latest may enter it)."""
        postgres = self._postgres_busy is None or self._postgres_busy.done()
        return postgres and all(t is self._inflight for t in self._batches if not t.done())

    async def _stage_free(self) -> None:
        while not self._free():
            waiting: list[asyncio.Future[None]] = [
                t for t in self._batches if t is not self._inflight
            ]
            if self._postgres_busy is not None and not self._postgres_busy.done():
                waiting.append(self._postgres_busy)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)

    async def _learn_starts(self, first: Mapping[TopicPartition, int]) -> None:
        """Where each partition of a batch new since the assignment starts: its
        committed offset, or the log's start when it has none (as
        `auto_offset_reset="earliest"`). Asked here, not in the rebalance listener,
        where the coordinator is busy with the rebalance."""
        try:
            for tp in [tp for tp in first if tp not in self._expected]:
                committed = await self.consumer.committed(tp)
                if committed is None:
                    committed = (await self.consumer.beginning_offsets([tp]))[tp]
                self._expected[tp] = committed
        except KafkaError as error:  # asked again with the next batch
            logger.warning("cannot read the committed offsets (%s)", error)

    def _contiguous(
        self, first: Mapping[TopicPartition, int], last: Mapping[TopicPartition, int]
    ) -> bool:
        """Whether a batch (`offset_bounds`) starts, in every partition, at the next
        offset to process; else it is dropped and its partitions fetched again from there
        (see `skipped_ahead`)."""
        ahead = skipped_ahead(first, self._expected, self._rewound)
        if ahead:
            logger.warning("records fetched past the next offset to process in partitions "
                           "%s; fetching again from there", sorted(tp.partition for tp in ahead))
            for tp in first:
                self.consumer.seek(tp, self._expected.get(tp, first[tp]))
            self._rewound.update(ahead)
            return False
        for tp, offset in last.items():
            self._expected[tp] = offset + 1
        return True

    def _abandon(self) -> None:
        """Cancel every batch in flight: none is committed."""
        for task in list(self._batches):
            task.cancel()

    def _stopping(self) -> bool:
        return self.should_stop  # a call: mypy would fold repeated reads of the property

    async def _gather(self) -> tuple[int, DecodedBatch | None]:
        """The next batch and the epoch it was gathered in: up to `batch_size` records,
        gathered and decoded while the one in flight is written; returned once the
        PostgreSQL stage is free and it holds something. None when stopping, or idle for
        `batch_within`. What a rebalance interrupts is dropped: after it, aiokafka
        fetches every assigned partition again from its committed offset."""
        consumer = self.consumer
        size = self.settings.batch_size
        loop = asyncio.get_running_loop()
        decoding: list[asyncio.Future[DecodedBatch]] = []
        gathered = 0
        epoch = self._epoch
        while gathered < size and not self._stopping():
            if self._rebalancing or epoch != self._epoch:
                decoding, gathered, epoch = [], 0, self._epoch
                if self._rebalancing:
                    await asyncio.sleep(POLL_SECONDS)
                    continue
            busy = not self._free()
            if gathered and not busy:
                break
            wait = POLL_SECONDS if busy or gathered else self.settings.batch_within
            fetched = await consumer.getmany(timeout_ms=int(wait * 1000),
                                             max_records=size - gathered)  # fmt: skip
            messages = [m for batch in fetched.values() for m in batch]
            if messages:
                gathered += len(messages)
                decoding.append(loop.run_in_executor(self._decoder, _decode, messages))
            elif not busy and not gathered:
                return epoch, None
        if not decoding:
            return epoch, None
        parts = await asyncio.gather(*decoding)
        batch = parts[0]
        for part in parts[1:]:
            batch.extend(part)
        return epoch, batch

    async def _wait_inflight(self) -> None:
        if self._inflight is not None:
            try:
                await self._inflight
            finally:
                self._inflight = None

    async def _complete(
        self, batch: DecodedBatch, offsets: dict[TopicPartition, int], *,
        after: asyncio.Task[None] | None, postgres: asyncio.Future[None],
    ) -> None:  # fmt: skip
        """Write the batch to PostgreSQL (while the batch `after` may still be in
        ClickHouse), then, once `after` is committed, to ClickHouse; deliver its outputs,
        commit `offsets` (the next offset of each of its partitions)."""
        started = time.perf_counter()
        try:
            written = await self.runtime.write_postgres(batch)
        finally:
            if not postgres.done():
                postgres.set_result(None)
        if after is not None:
            await after  # batches are committed in order
        await self.runtime.write_clickhouse(written, started=started)
        try:
            await self.consumer.commit(offsets)
        except KafkaError as error:  # the group moved on (this member was too slow)
            logger.warning("committing a processed batch failed (%s); its partitions' next "
                           "owner processes it again", error)  # fmt: skip
            return
        self._done.update(offsets)
        batches, records = self.committed
        self.committed = (batches + 1, records + len(batch))

    async def on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Finish and commit the batch in flight; drop what was gathered after it."""
        self._epoch += 1
        self._rebalancing = True
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            try:
                await asyncio.wait_for(asyncio.shield(inflight), FINISH_TIMEOUT)
            except TimeoutError:
                logger.error("the batches in flight did not finish within %.0fs of a "
                             "rebalance; they are left uncommitted", FINISH_TIMEOUT)  # fmt: skip
                self._abandon()
            except Exception:
                logger.exception("the batch in flight failed during a rebalance")
        for tp in revoked:
            self._done.pop(tp, None)
            self._expected.pop(tp, None)

    def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._rewound.clear()
        self._rebalancing = False
        logger.info("assigned partitions %s (after %d batches of %d records committed)",
                    sorted(tp.partition for tp in assigned), *self.committed)  # fmt: skip

    @mode.Service.timer(LAG_INTERVAL)
    async def _update_lag(self) -> None:
        """Set the lag gauge: per assigned partition, its end offset minus the next
        offset to process."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = list(consumer.assignment())
        if not assigned:
            self.runtime.metrics.set_lag({})
            return
        try:
            ends = await consumer.end_offsets(assigned)
            lag = {}
            for tp in assigned:
                done = self._done.get(tp)
                if done is None:
                    done = await consumer.committed(tp) or 0
                lag[tp.partition] = max(int(ends.get(tp, 0)) - done, 0)
        except KafkaError as error:
            logger.warning("cannot update the lag gauge: %s", error)
            return
        self.runtime.metrics.set_lag(lag)


def offset_bounds(
    records: Iterable[RawRecord],
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first and the last offset of each partition in `records` (in fetch order)."""
    first: dict[TopicPartition, int] = {}
    last: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        first.setdefault(tp, record.offset)
        last[tp] = record.offset
    return first, last


def skipped_ahead(
    first: Mapping[TopicPartition, int], expected: Mapping[TopicPartition, int],
    rewound: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:  # fmt: skip
    """The partitions whose records start past the next offset to process, with that
    offset: to fetch again from there. A commit covers every offset below it, so a batch
    starting later would skip records for good (a fetch position gone stale across a
    rebalance, say). A gap found again where the partition was fetched again from is the
    log's own (offsets without records) and passes; so do a partition not known yet and
    records starting earlier (processed already: the sinks make them harmless)."""
    return {
        tp: expected[tp] for tp, offset in first.items()
        if tp in expected and offset > expected[tp] and rewound.get(tp) != expected[tp]
    }  # fmt: skip


def _decode(messages: list[Any]) -> DecodedBatch:
    return decode_records([raw_record(m) for m in messages])


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.engine.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.engine.on_assigned(assigned)
