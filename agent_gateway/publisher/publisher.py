"""`Publisher`: hooks call `publish()`, which only hands the event over; a thread with
its own event loop (`sender`) encodes, batches and produces it, or spools it to disk.

Why a thread: encoding, batching, compression and the producer's bookkeeping cost about
17 us of CPU per event (bench/publish_throughput.py); on the voice loop that would be
time taken from audio. `publish()` only appends to a deque: 0.2 us median, 2 us p99
(bench/publish_loop.py), against 170 us median of loop CPU for a hook awaiting a
psycopg INSERT. It reads nothing but its own fields (not even `event.type`: the event
is cold in the cache after the hook's pause), and it makes no syscall (see `handoff`).
The price is the GIL: the sender's work still competes with the voice thread for the
interpreter, it just never runs *inside* a hook (the bench measures that too: a 5 ms
timer on the voice loop wakes ~0.25 ms later at 3,000 events/s).

Lifecycle: `start()` starts the thread, which adopts orphaned spool files and connects
in the background (a down broker never fails `start()`). `aclose(timeout=...)` flushes
the queue and the spool to Kafka until shortly before the timeout, then puts whatever is
left on disk for the next start, and returns within the timeout. `publish()` never
raises for broker or disk trouble and never blocks: events published before `start()`
wait in the queue, events published after `aclose()` are written straight to the spool.

Delivery: at least once, in order per session, counted. An event leaves only by a Kafka
acknowledgement (`sent`) or into the dead-letter file (`failed`); `dropped` counts events
lost to a disk that failed at shutdown and is 0 otherwise. Consumers deduplicate by
(sessionid, sequence): a re-send after a producer failure or a crash mid-drain is
possible, a gap is not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from turnlog.agent_gateway.publisher.errors import PublisherError, SpoolWriteError
from turnlog.agent_gateway.publisher.handoff import OVERFLOW_MARKER, Handoff, dead_letter
from turnlog.agent_gateway.publisher.kafka import Connect, KafkaLink
from turnlog.agent_gateway.publisher.message import Message, raw_message, to_message
from turnlog.agent_gateway.publisher.metrics import PublisherMetrics, collector_for
from turnlog.agent_gateway.publisher.sender import Sender
from turnlog.agent_gateway.publisher.settings import PublisherSettings
from turnlog.agent_gateway.publisher.spool import Spool, new_owner_id
from turnlog.schemas import CloudEvent, EventTooLargeError

logger = logging.getLogger("turnlog.gateway.publisher")
_time_ns = time.time_ns


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot of the publisher's counters (events unless stated otherwise)."""

    enqueued: int
    """Accepted by `publish()`."""
    sent: int
    """Acknowledged by Kafka, including events adopted from earlier runs' spool files."""
    spooled: int
    """Written to the spool (broker unreachable, producer failure, or queue full)."""
    overflowed: int
    """Of `spooled`: written by `publish()` itself because the queue was full."""
    failed: int
    """Never sendable (too large, rejected by the broker): in the dead-letter file."""
    dropped: int
    """Lost. 0 unless the disk failed while shutting down."""
    queue_depth: int
    spool_bytes: int
    spool_segments: int
    adopted_segments: int
    """Spool files of dead publishers this one took over."""
    producer_rebuilds: int
    connected: bool


class Publisher:
    """Publishes the gateway's events to Kafka without ever blocking the voice loop."""

    def __init__(
        self,
        settings: PublisherSettings,
        *,
        registry: CollectorRegistry | None = None,
        connect: Connect = KafkaLink.connect,
    ) -> None:
        """`registry`: where the metrics go (the default registry when None). `connect`
        builds the Kafka link; tests pass a fake broker here."""
        self.settings = settings
        self._spool = Spool(
            settings.spool_dir, owner=new_owner_id(), segment_bytes=settings.segment_bytes
        )
        self._metrics = PublisherMetrics(
            queue_depth=lambda: len(self._handoff.queue), spool_bytes=self._spool.total_bytes,
            queued_types=self._queued_types,
        )
        self._handoff = Handoff(
            capacity=settings.queue_size, spool=self._spool, metrics=self._metrics,
            on_overflow=self._on_overflow,
        )
        self._sender = Sender(
            settings, handoff=self._handoff, spool=self._spool, metrics=self._metrics,
            connect=connect,
        )
        self._collector = collector_for(registry)
        self._collector.attach(self._metrics)
        # The fast path of publish() reads only these fields of `self` (plus the deque):
        # every other object it touched cost a cache miss after the hook's pause.
        self._queue = self._handoff.queue
        self._capacity = settings.queue_size
        self._limit = settings.queue_size
        """Queue bound of the fast path; 0 while overflowing or after aclose()."""
        self._wake_depth = self._handoff.wake_depth
        self._bell = self._handoff.bell
        self._accepted = 0
        self._thread: threading.Thread | None = None
        self._sender_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._closing: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the sender thread; it adopts orphaned spool files and connects in the
        background. Fails only when the spool folder is unusable."""
        if self._thread is not None or self._closing is not None:
            raise PublisherError("Publisher.start() called twice or after aclose()")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run_sender, args=(ready,), name="turnlog-publisher", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)
        logger.info("publisher started (spool %s, owner %s)",
                    self.settings.spool_dir, self._spool.owner)

    def _run_sender(self, ready: concurrent.futures.Future[None]) -> None:
        with asyncio.Runner() as runner:
            self._sender_loop = runner.get_loop()
            runner.run(self._sender.run(ready))

    async def aclose(self, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (the API)
        """Flush the queue and the spool to Kafka within `timeout` seconds; whatever is
        not acknowledged by then stays on disk for the next start. Never drops."""
        if self._closing is not None:
            await self._closing.wait()  # a concurrent aclose() does the work
            return
        self._closing = asyncio.Event()
        try:
            await self._close(timeout)
        finally:
            self._closing.set()

    async def _close(self, within: float) -> None:
        deadline = time.monotonic() + within
        thread, loop = self._thread, self._sender_loop
        if thread is not None and loop is not None and thread.is_alive():
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._sender.request_stop(deadline, done)
            try:
                await asyncio.wait_for(
                    asyncio.shield(asyncio.wrap_future(done)),
                    timeout=max(0.05, deadline - time.monotonic() + 0.2),
                )
            except TimeoutError:
                logger.error("publisher sender did not stop within %.1f s", within)
            await asyncio.to_thread(thread.join, max(0.05, deadline - time.monotonic() + 0.3))
        self._closed = True
        self._limit = 0
        if thread is not None and thread.is_alive():
            logger.error("publisher sender thread is stuck; %d events stay in its queue",
                         len(self._queue))
            return
        self._persist_leftovers()
        self._collector.detach(self._metrics)
        stats = self.stats()
        logger.info("publisher closed: %d sent, %d spooled, %d failed, %d left in spool "
                    "(%d bytes)", stats.sent, stats.spooled, stats.failed,
                    stats.spool_segments, stats.spool_bytes)

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    # -- the hot path ------------------------------------------------------------------
    def publish(self, event: CloudEvent[Any]) -> None:
        """Hand `event` over; never blocks, never raises for broker or disk trouble.
        Call it from one thread (the job's event loop)."""
        self._accepted += 1  # by type later, on the sender thread: see PublisherMetrics
        queue = self._queue
        depth = len(queue)
        if depth < self._limit:
            queue.append((event, _time_ns()))
            if depth >= self._wake_depth and self._bell.sleeping:
                self._bell.ring()
            return
        if self._closed and not (self._thread is not None and self._thread.is_alive()):
            self._persist([(event, _time_ns())])
        elif self._closed:
            queue.append((event, _time_ns()))  # a stuck sender still owns the spool
        else:
            self._handoff.spill(event, _time_ns())

    def _queued_types(self) -> dict[str, int]:
        """Event types waiting in the queue (for the metrics, at scrape time)."""
        counts: dict[str, int] = {}
        for item in list(self._handoff.queue):  # list() copies in one step under the GIL
            if item is not OVERFLOW_MARKER:
                kind = getattr(item[0], "type", "invalid")  # type: ignore[index]
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def _on_overflow(self, overflowing: bool) -> None:
        self._limit = 0 if overflowing or self._closed else self._capacity

    # -- after the sender is gone ------------------------------------------------------
    def _persist_leftovers(self) -> None:
        """Events published while the sender was finishing: to disk, in order."""
        queue = self._handoff.queue
        batch: list[tuple[CloudEvent[Any], int]] = []
        while queue:
            item = queue.popleft()
            if item is OVERFLOW_MARKER:
                self._persist(batch)
                batch = []
                segment = self._handoff.take_overflow()
                if segment is not None:
                    self._spool.link_overflow(segment)
            else:
                batch.append(item)  # type: ignore[arg-type]
        self._persist(batch)
        self._spool.close()

    def _persist(self, items: list[tuple[CloudEvent[Any], int]]) -> None:
        messages: list[Message] = []
        for event, published_ns in items:
            try:
                messages.append(to_message(event, published_ns))
            except EventTooLargeError as error:
                dead_letter(self._spool, self._metrics, raw_message(event, published_ns),
                            str(error))
        enqueued = self._metrics.enqueued  # the sender thread, its other writer, is gone
        for event, _ in items:
            enqueued[event.type] = enqueued.get(event.type, 0) + 1
        if not messages:
            return
        try:
            self._spool.append(messages)
        except SpoolWriteError as error:
            self._metrics.count_dropped(len(messages))
            logger.error("%d events lost after close: %s", len(messages), error)
            return
        spooled = self._metrics.spooled
        for message in messages:
            spooled[message.type] = spooled.get(message.type, 0) + 1

    # -- observability -----------------------------------------------------------------
    def stats(self) -> PublisherStats:
        metrics = self._metrics
        state = self._sender.state
        return PublisherStats(
            enqueued=self._accepted,
            sent=_total(metrics.sent),
            spooled=_total(metrics.spooled) + _total(metrics.overflowed),
            overflowed=_total(metrics.overflowed),
            failed=_total(metrics.failed),
            dropped=metrics.dropped,
            queue_depth=sum(1 for item in list(self._handoff.queue)
                            if item is not OVERFLOW_MARKER),
            spool_bytes=self._spool.total_bytes(),
            spool_segments=self._spool.segment_count(),
            adopted_segments=self._spool.adopted_segments,
            producer_rebuilds=state.producer_rebuilds,
            connected=state.connected,
        )


def _total(counts: dict[str, int]) -> int:
    return sum(dict(counts).values())
