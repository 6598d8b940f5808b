"""One projection's consumer: `ProjectionEngine`, a `mode.Service` that feeds one
`Projector` from the events topic in its own consumer group.

The one thing to know: the projector's stored positions are the truth. On assignment the
new partitions are paused until the projector says where each starts (`positions`,
waited for while its store is down), then sought there (a partition without a position
starts at the log's start, whatever the group committed: a new or dropped store is
rebuilt from the log); a batch is applied (the same
batch again, with backoff, while a dependency is down) and only then is the next one
applied; the group's committed offsets follow, best effort, for lag and tooling. So a
rebalance, a crash or a stop at any point loses nothing and a repeat adds nothing (the
projector's idempotence), and no step needs the others' projections.

Overlap: the next batch is fetched and decoded (on a thread) while the projector applies
the current one. A batch is what has been fetched, up to `batch_size`; the engine waits
up to `batch_within` only while nothing has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from turnlog.streams.config import StreamsSettings
from turnlog.streams.decoding import decode_messages
from turnlog.streams.dlq import dead_letter_record
from turnlog.streams.errors import DependencyUnavailableError
from turnlog.streams.metrics import StreamsMetrics
from turnlog.streams.projector import Applied, DecodedBatch, Deliver, Projector
from turnlog.streams.records import RawRecord
from turnlog.streams.retry import until_available
from turnlog.streams.startup import FETCH_BYTES, verify_topics

logger = logging.getLogger("turnlog.streams.engine")

LAG_INTERVAL: Final = 5.0
"""Seconds between two updates of the consumer lag gauge."""
FINISH_TIMEOUT: Final = 10.0
"""Seconds a stop or a revocation waits for the batch in flight before dropping it (its
effects are whole or absent: the projector's transaction or idempotent inserts)."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds a stop gives the consumer and the projector to close (Kafka may be down)."""
MAX_POLL_INTERVAL: Final = 1800.0
"""Seconds the engine may go without fetching (waiting out a dependency) before Kafka
takes its partitions away."""


class ProjectionEngine(mode.Service):
    """See the module doc."""

    def __init__(
        self, projector: Projector, settings: StreamsSettings, *, metrics: StreamsMetrics,
        deliver: Deliver, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.projector = projector
        self.name = projector.name
        self.settings = settings
        self.topic: str = getattr(projector, "topic", None) or settings.events_topic
        """What it consumes: the events topic, unless the projector names another."""
        self.metrics = metrics
        self.deliver = deliver
        self._consumer: AIOKafkaConsumer | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._run_task: asyncio.Future[None] | None = None
        self._applying: asyncio.Task[None] | None = None
        self._epoch = 0
        """Counts revocations: a batch fetched in an earlier epoch is dropped."""
        self._unplaced: set[TopicPartition] = set()
        """Assigned partitions not yet sought to the projector's positions (paused)."""
        self._expected: dict[TopicPartition, int] = {}
        """Per placed partition, the next offset to hand to the projector."""
        self._rewound: dict[TopicPartition, int] = {}
        self._done: dict[TopicPartition, int] = {}
        self._uncommitted: dict[TopicPartition, int] = {}
        """Positions not yet committed to the group (committed after each batch, and
        again while idle until it works: a commit during a rebalance fails)."""
        self.applied = (0, 0)
        """Batches and records applied by this engine."""
        self._min_interval = float(getattr(projector, "min_batch_interval", 0.0))
        """Seconds between the starts of two batches (a store whose every write has a
        fixed cost, ClickHouse's parts, gathers bigger batches instead)."""
        self._applied_at = 0.0
        self.consuming = asyncio.Event()
        """Set once the projector and the consumer are up (what health checks wait for)."""

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"the {self.name} engine is not started")
        return self._consumer

    def __repr__(self) -> str:
        return f"<ProjectionEngine {self.name}>"

    async def on_start(self) -> None:
        self.metrics.start(self.name)
        self._decoder = ThreadPoolExecutor(max_workers=1,
                                           thread_name_prefix=f"turnlog-decode-{self.name}")
        self._run_task = self.add_future(self._run())

    async def on_stop(self) -> None:
        task = self._run_task
        if task is not None and not task.done():
            if self._applying is None or self._applying.done():
                task.cancel()  # starting, waiting or fetching: nothing to finish
            await asyncio.wait({task}, timeout=FINISH_TIMEOUT)
            if not task.done():
                logger.warning("%s: the batch in flight did not finish within %.0fs; "
                               "dropped (applied again by the partitions' next owner)",
                               self.name, FINISH_TIMEOUT)  # fmt: skip
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        if self._consumer is not None:
            await _bounded(self._consumer.stop(), f"{self.name}: leaving the group")
        await _bounded(self.projector.stop(), f"{self.name}: closing the projector")
        if self._decoder is not None:
            self._decoder.shutdown(wait=False)
        logger.info("%s: stopped after %d batches of %d records", self.name, *self.applied)

    def _stopping(self) -> bool:
        return self.should_stop

    def _waiting(self, waiting: bool) -> None:
        self.metrics.waiting.labels(self.name).set(1 if waiting else 0)
        if waiting:
            self.metrics.batch_failures.labels(self.name).inc()

    async def _run(self) -> None:
        try:
            await until_available(f"{self.name}: starting", self.projector.start, self._waiting)
            await until_available(f"{self.name}: checking the topics",
                                  lambda: verify_topics(self.settings))  # fmt: skip
            self._consumer = await until_available(f"{self.name}: joining Kafka", self._join)
            self.consuming.set()
            logger.info("%s: consuming %s as group %s", self.name, self.topic,
                        self.projector.group)  # fmt: skip
            await self._consume()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("%s: the engine failed; the worker stops", self.name)
            await self.crash(error)

    async def _join(self) -> AIOKafkaConsumer:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=self.projector.group,
            client_id=f"{self.projector.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=FETCH_BYTES,
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(max(s.session_timeout / 3, 0.1) * 1000),
            rebalance_timeout_ms=int((FINISH_TIMEOUT + s.session_timeout) * 1000),
            max_poll_interval_ms=int(MAX_POLL_INTERVAL * 1000),
        )  # fmt: skip
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        self._consumer = consumer  # the first assignment may come while it starts
        try:
            await consumer.start()
        except (KafkaError, OSError) as error:
            self._consumer = None
            await _bounded(consumer.stop(), f"{self.name}: closing a failed consumer")
            raise DependencyUnavailableError(
                f"cannot join group {self.projector.group} ({error!r})",
                dependency=f"Kafka at {s.kafka_bootstrap}",
            ) from error
        return consumer

    async def _consume(self) -> None:
        """Fetch and decode the next batch while the current one is applied."""
        loop = asyncio.get_running_loop()
        while not self._stopping():
            await self._place()
            epoch = self._epoch
            batch = await self._fetch(loop)
            if self._applying is not None:
                await self._applying  # one batch at a time, in order
                self._applying = None
            if batch is None and self._uncommitted and not self._stopping():
                await self._commit()  # idle: what a rebalance kept from committing
            if batch is None or epoch != self._epoch or self._unplaced or self._stopping():
                continue  # dropped: fetched again from the projector's positions
            if not self._contiguous(batch):
                continue
            self._applying = asyncio.ensure_future(self._apply(batch))
            self._applied_at = time.monotonic()
        if self._applying is not None:
            await self._applying

    async def _fetch(self, loop: asyncio.AbstractEventLoop) -> DecodedBatch | None:
        """Up to `batch_size` records, decoded; None when idle for `batch_within`."""
        size, gathered = self.settings.batch_size, 0
        parts: list[asyncio.Future[DecodedBatch]] = []
        while gathered < size and not self._stopping():
            busy = (self._applying is not None and not self._applying.done()) or (
                time.monotonic() - self._applied_at < self._min_interval)
            if gathered and not busy:
                break
            wait = 0.005 if busy or gathered else self.settings.batch_within
            try:
                fetched = await self.consumer.getmany(timeout_ms=int(wait * 1000),
                                                      max_records=size - gathered)  # fmt: skip
            except KafkaError as error:
                logger.warning("%s: fetching failed (%r)", self.name, error)
                await asyncio.sleep(1.0)
                break
            messages = [m for records in fetched.values() for m in records]
            if messages:
                gathered += len(messages)
                parts.append(loop.run_in_executor(self._decoder, decode_messages, messages))
            elif not busy and not gathered:
                break
        if not parts:
            return None
        decoded = await asyncio.gather(*parts)
        batch = decoded[0]
        for part in decoded[1:]:
            batch.extend(part)
        return batch

    async def _apply(self, batch: DecodedBatch) -> None:
        started = time.perf_counter()
        name = self.name
        if self.projector.dead_letters_decode and batch.dead_letters:
            now = datetime.now(UTC)
            letters = [dead_letter_record(d, topic=self.settings.dlq_topic, at=now)
                       for d in batch.dead_letters]  # fmt: skip
            await until_available(f"{name}: dead-lettering", lambda: self.deliver(letters))
        applied: Applied = await until_available(
            f"{name}: applying a batch of {len(batch)} records",
            lambda: self.projector.apply(batch, self.deliver), self._waiting,
        )  # fmt: skip
        offsets = {TopicPartition(t, p): o for (t, p), o in batch.next_offsets().items()}
        self._done.update(offsets)
        self._uncommitted.update(offsets)
        self.metrics.record(self.name, batch, applied, seconds=time.perf_counter() - started,
                            decode_letters=self.projector.dead_letters_decode)  # fmt: skip
        batches, records = self.applied
        self.applied = (batches + 1, records + len(batch))
        await self._commit()

    async def _commit(self) -> None:
        """Commit the positions applied since the last commit to the group: for lag and
        tooling only (the projector's positions are the truth). Kept for the next try
        when it fails (a rebalance in progress, Kafka away)."""
        pending = {tp: o for tp, o in self._uncommitted.items()
                   if tp in self.consumer.assignment()}  # fmt: skip
        if not pending:
            self._uncommitted.clear()
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.consumer.commit(pending)
        except (KafkaError, TimeoutError) as error:
            logger.debug("%s: committing offsets failed (%r)", self.name, error)
            return
        for tp, offset in pending.items():
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]

    async def _place(self) -> None:
        """Seek the partitions assigned since the last batch to the projector's positions,
        then resume them."""
        if not self._unplaced:
            return
        wanted = sorted(self._unplaced)
        epoch = self._epoch
        stored = await until_available(
            f"{self.name}: reading the stored positions",
            lambda: self.projector.positions([(tp.topic, tp.partition) for tp in wanted]),
        )  # fmt: skip
        if epoch != self._epoch:
            return  # revoked meanwhile: the next assignment asks again
        consumer = self.consumer
        assigned = consumer.assignment()
        for tp in wanted:
            if tp not in assigned:
                continue
            position = stored.get((tp.topic, tp.partition))
            if position is None:  # nothing applied yet: from the log's start
                position = await self._log_start(tp)
            consumer.seek(tp, position)
            self._expected[tp] = position
            self._done[tp] = position
            self._uncommitted[tp] = position  # the group learns the stored position
        consumer.resume(*[tp for tp in wanted if tp in assigned])
        self._unplaced.difference_update(wanted)
        logger.info("%s: partitions %s start at %s", self.name,
                    [tp.partition for tp in wanted],
                    [self._expected.get(tp) for tp in wanted])  # fmt: skip

    async def _log_start(self, tp: TopicPartition) -> int:
        async def ask() -> int:
            try:
                return int((await self.consumer.beginning_offsets([tp]))[tp])
            except KafkaError as error:
                raise DependencyUnavailableError(
                    f"cannot read the first offset of {tp} ({error!r})",
                    dependency=f"Kafka at {self.settings.kafka_bootstrap}",
                ) from error

        return await until_available(f"{self.name}: reading the log's start", ask)

    def _contiguous(self, batch: DecodedBatch) -> bool:
        first, last = offset_bounds(batch.records)
        ahead = skipped_ahead(first, self._expected, self._rewound)
        if ahead:
            logger.warning("%s: records fetched past the next offset to apply in partitions "
                           "%s; fetching again from there", self.name,
                           sorted(tp.partition for tp in ahead))  # fmt: skip
            for tp, offset in ahead.items():
                self.consumer.seek(tp, offset)
            self._rewound.update(ahead)
            return False
        for tp, offset in last.items():
            self._expected[tp] = offset + 1
        return True

    async def on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._epoch += 1
        applying = self._applying
        if applying is not None and not applying.done():
            try:
                await asyncio.wait_for(asyncio.shield(applying), FINISH_TIMEOUT)
            except TimeoutError:
                logger.warning("%s: the batch in flight did not finish within %.0fs of a "
                               "rebalance; the partitions' next owner applies it again",
                               self.name, FINISH_TIMEOUT)  # fmt: skip
            except Exception:
                logger.exception("%s: the batch in flight failed during a rebalance",
                                 self.name)  # fmt: skip
        revoked = list(revoked)
        for tp in revoked:
            self._done.pop(tp, None)
            self._expected.pop(tp, None)
            self._uncommitted.pop(tp, None)
            self._unplaced.discard(tp)
        self.projector.revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        self._rewound.clear()
        if assigned:
            self.consumer.pause(*assigned)
            self._unplaced.update(assigned)
        logger.info("%s: assigned partitions %s", self.name,
                    sorted(tp.partition for tp in assigned))  # fmt: skip

    @mode.Service.timer(LAG_INTERVAL)
    async def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        assigned = list(consumer.assignment())
        try:
            ends = await consumer.end_offsets(assigned) if assigned else {}
        except KafkaError as error:
            logger.debug("%s: cannot update the lag gauge (%r)", self.name, error)
            return
        lag = {}
        for tp in assigned:
            done = self._done.get(tp, self._expected.get(tp))
            if done is not None:
                lag[tp.partition] = max(int(ends.get(tp, 0)) - done, 0)
        self.metrics.set_lag(self.name, lag)


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
    """The partitions whose records start past the next offset to apply, with that
    offset: to fetch again from there. A stored position covers every offset below it, so
    a batch starting later would skip records for good (a fetch position gone stale
    across a rebalance, say). A gap found again where the partition was fetched again
    from is the log's own (offsets without records, transaction markers) and passes; so
    do a partition not known yet and records starting earlier (applied already: the
    projector makes them harmless)."""
    return {
        tp: expected[tp] for tp, offset in first.items()
        if tp in expected and offset > expected[tp] and rewound.get(tp) != expected[tp]
    }  # fmt: skip


async def _bounded(awaitable: Any, doing: str) -> None:
    try:
        await asyncio.wait_for(awaitable, CLOSE_TIMEOUT)
    except TimeoutError:
        logger.warning("%s took over %.0fs; gave up", doing, CLOSE_TIMEOUT)
    except Exception as error:
        logger.warning("%s failed (%r)", doing, error)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: ProjectionEngine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.engine.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.engine.on_assigned(assigned)
