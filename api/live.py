"""A session's new events as they reach Kafka, as Server-Sent Events.

The log is keyed by session id, so one session lives in one partition: the one
aiokafka's murmur2 partitioner (the Java client's, which the gateway uses) gives its
key. Each stream reads that partition from its end, without a consumer group, and
passes on the records whose key is the session's. The SSE `id` is the event's sequence
and the `event` its CloudEvents type; `data` is the event exactly as it is in the log.
The stream says `ready` once it reads from the end (what comes after is delivered), sends
a comment when quiet (proxies close idle connections), and ends after `session.closed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from turnlog.api.errors import DependencyUnavailableError
from turnlog.schemas import SessionClosed

logger = logging.getLogger(__name__)

CLOSED_TYPE: Final = SessionClosed.TYPE
_TIMEOUT_S: Final = 5.0


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


def sse(event: str | None, data: str, *, event_id: str | None = None) -> bytes:
    """One SSE message; `data` may span lines."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


async def session_stream(
    *, bootstrap: str, topic: str, partition: int, session_id: str, heartbeat_s: float
) -> AsyncIterator[bytes]:
    """The SSE messages of `session_id`'s new events; see the module doc."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        request_timeout_ms=10_000, fetch_max_wait_ms=100,
    )  # fmt: skip
    key = session_id.encode()
    tp = TopicPartition(topic, partition)
    try:
        try:
            async with asyncio.timeout(_TIMEOUT_S):
                await consumer.start()
                consumer.assign([tp])
                await consumer.seek_to_end(tp)
                position = await consumer.position(tp)
        except (KafkaError, OSError, TimeoutError) as error:
            logger.warning("live stream of %s cannot read Kafka: %r", session_id, error)
            yield sse("error", json.dumps({"error": "kafka unavailable"}))
            return
        yield sse("ready", json.dumps({"session_id": session_id, "offset": position}))
        while True:
            batches = await consumer.getmany(tp, timeout_ms=int(heartbeat_s * 1000))
            records = batches.get(tp, [])
            if not records:
                yield b": keep-alive\n\n"
                continue
            for record in records:
                if record.key != key or record.value is None:
                    continue
                message, closed = _event_message(record.value)
                if message is not None:
                    yield message
                if closed:
                    return
    finally:
        # Also when the client went away and the response is being cancelled: a consumer
        # left running would hold its connections.
        with anyio.move_on_after(_TIMEOUT_S, shield=True), contextlib.suppress(KafkaError, OSError):
            await consumer.stop()


def _event_message(value: bytes) -> tuple[bytes | None, bool]:
    """The SSE message of one log record, and whether it closes the session."""
    try:
        text = value.decode()
        envelope = json.loads(text)
        type_, sequence = str(envelope["type"]), int(envelope["sequence"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None, False  # not ours to judge: the streams worker sends it to the DLQ
    return sse(type_, text, event_id=str(sequence)), type_ == CLOSED_TYPE
