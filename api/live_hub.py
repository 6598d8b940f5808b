"""One Kafka reader per API process for every live viewer: the hub.

The hub reads every partition of the events topic from its end, without a consumer
group, and hands each record to the viewers of its key (the session id) through bounded
queues. Handing out is synchronous (no `await` within a batch), so a viewer registers
between batches and learns the hub's exact position in its session's partition: every
record from that offset on reaches its queue; what came before is the history's to read.
A viewer that falls `queue_max` records behind is cut off (its stream says why) instead
of slowing the others. Started on the first viewer, stopped with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from turnlog.api.errors import DependencyUnavailableError
from turnlog.api.live_events import DecodedEvent, decode_event

logger = logging.getLogger(__name__)

_TIMEOUT_S: Final = 5.0
_RETRY_S: Final = 1.0
HISTORY_FETCH_BYTES: Final = 16 * 1024 * 1024
"""What a history reader fetches at once: a long session's history in a few round trips
(the default takes 1 MB a round trip)."""


class HistoryReaders:
    """Started Kafka consumers for the streams' history reads, kept for the next stream
    (`idle_max` at most): starting one (bootstrap, metadata) costs about as much as
    reading a whole session's history."""

    def __init__(self, bootstrap: str, *, idle_max: int = 4) -> None:
        self._bootstrap = bootstrap
        self._idle: list[AIOKafkaConsumer] = []
        self._idle_max = idle_max
        self.started = 0
        """Consumers started so far (reused ones count once)."""

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[AIOKafkaConsumer]:
        """A started consumer, assigned nothing: assign and seek it. A reader that failed
        is stopped, not kept."""
        consumer = self._idle.pop() if self._idle else await self._start()
        healthy = False
        try:
            yield consumer
            healthy = True
        finally:
            consumer.assign([])
            if healthy and len(self._idle) < self._idle_max:
                self._idle.append(consumer)
            else:
                await _stop(consumer)

    async def _start(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
            request_timeout_ms=10_000, fetch_max_wait_ms=100,
            max_partition_fetch_bytes=HISTORY_FETCH_BYTES, fetch_max_bytes=HISTORY_FETCH_BYTES,
        )  # fmt: skip
        try:
            async with asyncio.timeout(_TIMEOUT_S):
                await consumer.start()
        except BaseException:
            await _stop(consumer)
            raise
        self.started += 1
        return consumer

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for consumer in idle:
            await _stop(consumer)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    with anyio.move_on_after(_TIMEOUT_S, shield=True), contextlib.suppress(KafkaError, OSError):
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class LiveRecord:
    offset: int
    event: DecodedEvent | None
    """The record as an SSE message, decoded once for every viewer (None: not an event)."""


@dataclass(eq=False)
class Viewer:
    """One live stream's place at the hub: its queue, and the first offset it gets."""

    session_id: str
    partition: int
    start_offset: int
    """The hub's position in the partition when the viewer registered: records from
    here on arrive in `queue`."""
    queue: asyncio.Queue[LiveRecord] = field(repr=False)
    overflowed: bool = False
    """Fell `queue_max` records behind: its stream ends."""
    closed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set when the hub stops or cut the viewer off."""


class LiveHub:
    """See the module doc."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        partitions: Callable[[str], Awaitable[list[int]]],
        queue_max: int = 10_000,
    ) -> None:
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._topic = topic
        self._queue_max = queue_max
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._positions: dict[int, int] = {}
        self._viewers: dict[bytes, set[Viewer]] = {}
        self.readers = HistoryReaders(bootstrap)
        """Where the streams read their histories."""
        self.consumers_started = 0
        """Kafka consumers this hub has started (one, unless Kafka failed at start)."""

    @property
    def viewers(self) -> int:
        return sum(len(v) for v in self._viewers.values())

    async def subscribe(self, session_id: str, partition: int) -> Viewer:
        """Register a viewer of `session_id` (whose records are in `partition`)."""
        await self._started()
        if partition not in self._positions:
            raise DependencyUnavailableError(
                f"Kafka has no partition {partition} of {self._topic!r}", dependency="kafka"
            )
        viewer = Viewer(
            session_id, partition, self._positions[partition], asyncio.Queue(self._queue_max)
        )
        self._viewers.setdefault(session_id.encode(), set()).add(viewer)
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        key = viewer.session_id.encode()
        viewers = self._viewers.get(key)
        if viewers is not None:
            viewers.discard(viewer)
            if not viewers:
                del self._viewers[key]

    async def _started(self) -> None:
        async with self._lock:
            if self._task is not None:
                return
            partitions = await self._partitions(self._topic)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                request_timeout_ms=10_000, fetch_max_wait_ms=100,
            )  # fmt: skip
            try:
                async with asyncio.timeout(_TIMEOUT_S):
                    await consumer.start()
                    self.consumers_started += 1
                    tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
                    consumer.assign(tps)
                    await consumer.seek_to_end(*tps)
                    positions = {tp.partition: await consumer.position(tp) for tp in tps}
            except (KafkaError, OSError, TimeoutError) as error:
                with contextlib.suppress(KafkaError, OSError):
                    await consumer.stop()
                raise DependencyUnavailableError(
                    f"Kafka at {self._bootstrap} cannot be read: {error!r}", dependency="kafka"
                ) from error
            self._consumer, self._positions = consumer, positions
            self._task = asyncio.create_task(self._run(consumer), name="live-hub")

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except KafkaError as error:
                logger.warning("live hub cannot read Kafka: %r", error)
                await asyncio.sleep(_RETRY_S)
                continue
            for tp, records in batches.items():
                self._dispatch(tp.partition, records)

    def _dispatch(self, partition: int, records: list[object]) -> None:
        """Hand `records` to their viewers; no `await`: registration sees a whole batch
        handed out or none of it."""
        for record in records:
            offset: int = record.offset  # type: ignore[attr-defined]
            viewers = self._viewers.get(record.key)  # type: ignore[attr-defined]
            value = record.value  # type: ignore[attr-defined]
            self._positions[partition] = offset + 1
            if not viewers or value is None:
                continue
            live = LiveRecord(offset, decode_event(value))
            for viewer in viewers:
                if viewer.overflowed or offset < viewer.start_offset:
                    continue
                try:
                    viewer.queue.put_nowait(live)
                except asyncio.QueueFull:
                    viewer.overflowed = True
                    viewer.closed.set()

    async def stop(self) -> None:
        for viewers in self._viewers.values():
            for viewer in viewers:
                viewer.closed.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await _stop(self._consumer)
            self._consumer = None
        await self.readers.close()
