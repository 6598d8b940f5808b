"""Test helpers: an in-memory broker that implements the publisher's `Link` interface,
realistic session events, and a reader of spool folders. No mocks: the fake behaves
like aiokafka where it matters (a failed batch wedges its partition; a broker that goes
away leaves batches pending, not failed).
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber, ProducerClosed

from turnlog.agent_gateway.publisher.errors import BrokerUnavailableError
from turnlog.agent_gateway.publisher.message import Message
from turnlog.agent_gateway.publisher.settings import PublisherSettings
from turnlog.agent_gateway.publisher.spool import segment_order
from turnlog.agent_gateway.publisher.spool_format import SpooledRecord, iter_file
from turnlog.schemas import (
    CloudEvent,
    ConversationItemAdded,
    UserTranscribed,
    agent_source,
    new_event,
)

_BATCH_RECORDS = 64


class FakeBroker:
    """One log per partition. `up`, `hang` and `reject` are switched by the test."""

    def __init__(self, *, partitions: int = 12, up: bool = True) -> None:
        self.partitions = partitions
        self.logs: dict[int, list[Message]] = defaultdict(list)
        self.reject: Callable[[Message], BaseException | None] = lambda message: None
        """Called for each record of a batch; an exception fails the whole batch."""
        self.hang = False
        """Batches are taken but never acknowledged (a wedged producer)."""
        self.connects = 0
        self._up = up
        self._links: list[FakeLink] = []
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        return self._up

    def set_up(self, up: bool) -> None:
        """Stop or start the broker; batches left pending while it was down complete."""
        self._up = up
        if up:
            for link in list(self._links):
                link.resume()

    async def connect(self, settings: PublisherSettings) -> FakeLink:
        if not self._up:
            raise BrokerUnavailableError(f"fake broker at {settings.bootstrap_servers} is down")
        self.connects += 1
        link = FakeLink(self, asyncio.get_running_loop())
        self._links.append(link)
        return link

    def append(self, partition: int, messages: list[Message]) -> None:
        with self._lock:
            self.logs[partition].extend(messages)

    def delivered(self) -> list[Message]:
        with self._lock:
            return [m for log in self.logs.values() for m in log]

    def partitions_of(self, session_id: str) -> set[int]:
        with self._lock:
            return {p for p, log in self.logs.items() for m in log if m.session_id == session_id}


class FakeLink:
    """A connection of `FakeBroker`: batches are lists of messages."""

    def __init__(self, broker: FakeBroker, loop: asyncio.AbstractEventLoop) -> None:
        self._broker = broker
        self._loop = loop
        self._pending: list[tuple[asyncio.Future[Any], list[Message], int]] = []
        self._wedged: set[int] = set()
        self._closed = False

    def partition(self, key: bytes) -> int:
        return zlib.crc32(key) % self._broker.partitions

    def batches(self, messages: list[Message]) -> list[tuple[Any, int]]:
        return [
            (messages[i:i + _BATCH_RECORDS], len(messages[i:i + _BATCH_RECORDS]))
            for i in range(0, len(messages), _BATCH_RECORDS)
        ]

    async def send(self, batch: Any, partition: int) -> asyncio.Future[Any]:
        if self._closed:
            raise ProducerClosed()
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((future, list(batch), partition))
        if self._broker.up and not self._broker.hang:
            self._loop.call_soon(self._complete_pending)
        return future

    def resume(self) -> None:
        if not self._closed:
            self._loop.call_soon_threadsafe(self._complete_pending)

    def _complete_pending(self) -> None:
        if not self._broker.up or self._broker.hang:
            return
        pending, self._pending = self._pending, []
        for future, batch, partition in pending:
            if not future.done():
                self._complete(future, batch, partition)

    def _complete(self, future: asyncio.Future[Any], batch: list[Message], partition: int) -> None:
        if partition in self._wedged:  # aiokafka: a gap in the sequence numbers
            future.set_exception(OutOfOrderSequenceNumber())
            return
        for message in batch:
            error = self._broker.reject(message)
            if error is not None:
                self._wedged.add(partition)
                future.set_exception(error)
                return
        self._broker.append(partition, batch)
        future.set_result(None)

    async def close(self, *, within: float) -> None:
        await self.abort(within=within)

    async def abort(self, *, within: float) -> None:
        self._closed = True
        for future, _, _ in self._pending:
            if not future.done():
                future.set_exception(KafkaConnectionError("fake link aborted"))
        self._pending = []


def session_events(
    session_id: str, count: int, *, start: int = 1, text_bytes: int = 24
) -> list[CloudEvent[Any]]:
    """A session's worth of events: five interim or final transcripts for each committed
    conversation item, ~530 bytes each on average once encoded (with the default text)."""
    source = agent_source("tutor", "worker-1")
    text = ("the capital of france is paris " * (text_bytes // 31 + 1))[:text_bytes]
    events: list[CloudEvent[Any]] = []
    for sequence in range(start, start + count):
        turn = f"t{sequence // 6}"
        payload: Any
        if sequence % 6 == 0:
            payload = ConversationItemAdded(
                turn_id=turn, item_id=f"item-{sequence}", role="user", text=text
            )
        else:
            payload = UserTranscribed(
                turn_id=turn, transcript=text, is_final=sequence % 6 == 5, language="en",
                confidence=0.93,
            )
        events.append(new_event(payload, session_id=session_id, sequence=sequence,
                                source=source, subject=f"room-{session_id}"))
    return events


def spooled_records(directory: Path) -> list[SpooledRecord]:
    """Every record of the segment files in a spool folder, in the order they would be
    drained (acknowledged prefixes are not skipped)."""
    paths = sorted(
        (order, path) for path in directory.iterdir()
        if (order := segment_order(path.name)) is not None
    )
    return [record for _, path in paths for record in iter_file(path.read_bytes())]
