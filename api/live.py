"""A session's events as Server-Sent Events: its history, then live, with no gap and no
duplicate.

The log is keyed by session id, so one session lives in one partition (aiokafka's
murmur2 partitioner, the Java client's, which the gateway uses). A stream first registers
with the process's `LiveHub` (one Kafka reader for all viewers), which tells it the
hub's position P in that partition and queues every record of the session from P on.
Then it reads the history straight from the log, not from ClickHouse (which lags): the
partition from the first offset stamped at the session's start (PostgreSQL) minus a
margin, up to P, keeping the session's records. It sends the events whose sequence is
greater than the client's (`Last-Event-ID` or `?after=`), says `ready` with how many,
then drains the queue. Records below P come only from the history and records from P on
only from the queue, so nothing falls between; a sequence already sent (a producer's
retry) is dropped, so the SSE `id`s (= sequence) only grow. A comment is sent when
quiet; the stream ends after `session.closed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from turnlog.api.errors import DependencyUnavailableError
from turnlog.api.live_events import DecodedEvent, Sequencer, decode_event, history_message, sse
from turnlog.api.live_hub import HistoryReaders, LiveHub, LiveRecord, Viewer

logger = logging.getLogger(__name__)

_TIMEOUT_S: Final = 5.0
_HISTORY_TIMEOUT_S: Final = 30.0
HISTORY_MARGIN: Final = timedelta(minutes=10)
"""How long before the session's start its history search begins: producers' clocks."""


class KafkaMetadata:
    """One long-lived Kafka client: the topic's partitions, and whether Kafka answers."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._client: Any = None
        self._partitioner = DefaultPartitioner()

    async def _started(self) -> Any:
        if self._client is None:
            client = AIOKafkaClient(bootstrap_servers=self._bootstrap, request_timeout_ms=5000)
            try:
                async with asyncio.timeout(_TIMEOUT_S):
                    await client.bootstrap()
            except (KafkaError, OSError, TimeoutError) as error:
                await client.close()
                raise DependencyUnavailableError(
                    f"Kafka at {self._bootstrap} cannot be reached: {error!r}",
                    dependency="kafka",
                ) from error
            self._client = client
        return self._client

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partitions; `DependencyUnavailableError` when Kafka does not answer
        or has no such topic."""
        client = await self._started()
        try:
            async with asyncio.timeout(_TIMEOUT_S):
                cluster = await client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as error:
            raise DependencyUnavailableError(
                f"Kafka at {self._bootstrap} does not answer: {error!r}", dependency="kafka"
            ) from error
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise DependencyUnavailableError(f"Kafka has no topic {topic!r}", dependency="kafka")
        return sorted(partitions)

    async def partition_of(self, topic: str, key: str) -> int:
        partitions = await self.partitions(topic)
        partition: int = self._partitioner(key.encode(), partitions, partitions)
        return partition

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What one live stream reads."""

    session_id: str
    partition: int
    after: int
    """Deliver the events whose sequence is greater (0: all)."""
    started_at: datetime | None
    """The session's start (PostgreSQL): where the history's search in the log begins."""
    batched: bool = False
    """Send the history as `history` messages (JSON arrays), not one message per event."""
    open_value: Callable[[bytes], bytes] | None = None
    """Opens the sealed fields of one event's JSON (the session's key, read when the
    stream started); None: events go out as recorded."""


async def session_stream(
    hub: LiveHub, request: StreamRequest, *, topic: str, heartbeat_s: float
) -> AsyncIterator[bytes]:
    """The SSE messages of the session's events after `request.after`; see the module
    doc. The viewer is registered before the history is read, so nothing falls between."""
    try:
        viewer = await hub.subscribe(request.session_id, request.partition)
    except DependencyUnavailableError as error:
        logger.warning("live stream of %s cannot read Kafka: %s", request.session_id, error)
        yield sse("error", json.dumps({"error": "kafka_unavailable"}))
        return
    try:
        async for message in _deliver(viewer, request, hub.readers, topic, heartbeat_s):
            yield message
    finally:
        hub.unsubscribe(viewer)


async def _deliver(
    viewer: Viewer,
    request: StreamRequest,
    readers: HistoryReaders,
    topic: str,
    heartbeat_s: float,
) -> AsyncIterator[bytes]:
    """History then live; each chunk carries every message at hand (one write for a batch
    of the log, not one per event)."""
    order = Sequencer(request.after)
    sent = 0
    try:
        async for values in read_history(
            readers, topic=topic, viewer=viewer, started_at=request.started_at
        ):
            events = _opened(order.take(decode_event(value) for value in values), request)
            if events:
                sent += len(events)
                yield history_message(events) if request.batched else _joined(events)
    except (KafkaError, OSError, TimeoutError) as error:
        logger.warning("history of %s cannot be read: %r", request.session_id, error)
        yield sse("error", json.dumps({"error": "kafka_unavailable"}))
        return
    yield sse("ready", json.dumps({
        "session_id": request.session_id, "after": request.after, "history": sent,
    }))  # fmt: skip
    while not order.closed:
        if viewer.overflowed:
            yield sse("error", json.dumps({
                "error": "too_slow", "message": "the stream fell too far behind; reconnect "
                "with Last-Event-ID to resume",
            }))  # fmt: skip
            return
        if viewer.closed.is_set() and viewer.queue.empty():
            yield sse("error", json.dumps({"error": "shutting_down"}))
            return
        record = await _next(viewer, heartbeat_s)
        if record is None:
            yield b": keep-alive\n\n"
            continue
        records = [record]
        while not viewer.queue.empty():
            records.append(viewer.queue.get_nowait())
        before = order.last
        events = _opened(order.take(r.event for r in records), request)
        if events and order.last - before != len(events):
            logger.warning(
                "session %s: %d events took the sequence from %d to %d",
                request.session_id, len(events), before, order.last,
            )  # fmt: skip
        if events:
            yield _joined(events)


def _opened(events: list[DecodedEvent], request: StreamRequest) -> list[DecodedEvent]:
    """`events` with their sealed fields opened; those without any are kept as they are."""
    open_value = request.open_value
    if open_value is None:
        return events
    opened: list[DecodedEvent] = []
    for event in events:
        if b'"sealed":' in event.value:
            decoded = decode_event(open_value(event.value))
            if decoded is not None:
                event = decoded
        opened.append(event)
    return opened


def _joined(events: list[DecodedEvent]) -> bytes:
    """The events' messages in one write."""
    return b"".join(event.message for event in events)


async def _next(viewer: Viewer, heartbeat_s: float) -> LiveRecord | None:
    """The viewer's next record; None after `heartbeat_s` or when it is closed."""
    if not viewer.queue.empty():
        return viewer.queue.get_nowait()
    getter = asyncio.ensure_future(viewer.queue.get())
    closer = asyncio.ensure_future(viewer.closed.wait())
    try:
        done, _ = await asyncio.wait({getter, closer}, timeout=heartbeat_s,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    finally:
        closer.cancel()
        if not getter.done():
            getter.cancel()
    return getter.result() if getter in done else None


async def read_history(
    readers: HistoryReaders, *, topic: str, viewer: Viewer, started_at: datetime | None
) -> AsyncIterator[list[bytes]]:
    """The values of the session's records in its partition before the viewer's start
    offset, from the first offset stamped at or after `started_at` minus a margin (the
    whole partition when unknown), in log order, a fetched batch at a time (sent as it
    comes: the first events need not wait for the last)."""
    tp = TopicPartition(topic, viewer.partition)
    if viewer.start_offset <= 0:
        return
    key = viewer.session_id.encode()
    async with readers.reader() as consumer:
        consumer.assign([tp])
        async with asyncio.timeout(_TIMEOUT_S):
            start = await _start_offset(consumer, tp, started_at)
        if start >= viewer.start_offset:
            return
        consumer.seek(tp, start)
        while True:
            async with asyncio.timeout(_HISTORY_TIMEOUT_S):
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=2000)
            values, done = [], False
            for record in batches.get(tp, []):
                if record.offset >= viewer.start_offset:
                    done = True
                    break
                if record.key == key and record.value is not None:
                    values.append(record.value)
            if values:
                yield values
            if done or await consumer.position(tp) >= viewer.start_offset:
                return


async def _start_offset(
    consumer: AIOKafkaConsumer, tp: TopicPartition, started_at: datetime | None
) -> int:
    first: int = (await consumer.beginning_offsets([tp]))[tp]
    if started_at is None:
        return first
    at_ms = int((started_at - HISTORY_MARGIN).timestamp() * 1000)
    found = (await consumer.offsets_for_times({tp: max(at_ms, 0)})).get(tp)
    if found is None:  # nothing stamped since: the history is in no record
        end: int = (await consumer.end_offsets([tp]))[tp]
        return end
    return max(first, int(found.offset))
