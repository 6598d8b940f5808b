"""Where `publish()` leaves events for the sender thread: a bounded deque, and the
overflow segment when the deque is full.

The deque is the fast path: `collections.deque.append` and `popleft` are atomic under
the GIL, so the voice thread and the sender thread share it without a lock. `publish()`
does not wake the sender for each event: any wake-up is a syscall (a futex or a
self-pipe write), measured at 4-7 us median and 25 us p99 on the 2-core test machine,
and the self-pipe of `call_soon_threadsafe` also releases the GIL, which the woken
sender then often keeps for its whole step. The sender polls instead, every `linger`
while events flow and every `idle_linger` after a quiet second, sleeping on a raw lock
when it has nothing in flight; `publish()` releases that lock only when the queue is
half full, so a flood is still picked up at once.

When the deque is full, `publish()` does not wait and does not drop: it encodes the
event and appends it to the overflow segment on disk itself (no fsync: the sender
fsyncs it in batches), and leaves a marker in the deque. Until the sender reaches that
marker, every new event goes to the overflow segment too, so the events behind the
marker stay behind it; at the marker the sender links the segment into the spool, in
line behind everything it took from the deque before, and `publish()` returns to the
deque. If the disk fails as well, the event goes into the deque beyond its bound: memory
grows, nothing is lost, and the order still holds (it is behind the marker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from turnlog.agent_gateway.publisher.errors import SpoolWriteError
from turnlog.agent_gateway.publisher.message import Message, raw_message, to_message
from turnlog.agent_gateway.publisher.metrics import PublisherMetrics
from turnlog.agent_gateway.publisher.segment import Segment
from turnlog.agent_gateway.publisher.spool import Spool
from turnlog.agent_gateway.publisher.spool_format import encode_record
from turnlog.schemas import CloudEvent, EventTooLargeError

logger = logging.getLogger("turnlog.gateway.publisher")


class _Marker:
    __slots__ = ()

    def __repr__(self) -> str:
        return "OVERFLOW_MARKER"


OVERFLOW_MARKER: Final = _Marker()
"""In the deque: the overflow segment's events come here."""

Item = tuple[CloudEvent[Any], int] | _Marker


class Bell:
    """How `publish()` wakes a sleeping sender. Its own object, because the sender
    writes `sleeping` all the time: next to the flags `publish()` reads on every call it
    would drag their cache line to the other core and back (measured: +0.5 us)."""

    def __init__(self) -> None:
        self.sleeping = False
        """Set by the sender before it blocks in `sleep()`."""
        self._lock = threading.Lock()
        self._lock.acquire()  # held, except between a ring() and the sleeper's return

    def ring(self) -> None:
        """Voice thread, when `sleeping` was seen."""
        self.sleeping = False
        try:  # noqa: SIM105 (contextlib.suppress costs a microsecond here)
            self._lock.release()
        except RuntimeError:  # already released: the sender is waking anyway
            pass

    def sleep(self, timeout: float) -> None:
        """Sender thread: block until `ring()` or `timeout` seconds."""
        self._lock.acquire(timeout=timeout)


class Handoff:
    """State shared by `publish()` and the sender thread."""

    def __init__(self, *, capacity: int, spool: Spool, metrics: PublisherMetrics,
                 on_overflow: Callable[[bool], None] = lambda overflowing: None) -> None:
        self.queue: deque[Item] = deque()
        self.capacity = capacity
        self.wake_depth = max(1, capacity // 2)
        """Queue depth at which `publish()` wakes a sleeping sender."""
        self.overflowing = False
        """`publish()` writes to `spool.overflow` until the sender reaches the marker;
        `on_overflow` tells the publisher, whose fast path reads only its own fields."""
        self._on_overflow = on_overflow
        self.bell = Bell()
        self.lock = threading.Lock()
        self._spool = spool
        self._metrics = metrics
        self._disk_error_logged = 0.0

    def spill(self, event: CloudEvent[Any], published_ns: int) -> None:
        """Write `event` to the overflow segment (queue full); voice thread."""
        kind = event.type
        with self.lock:
            if not self.overflowing and len(self.queue) < self.capacity:
                self.queue.append((event, published_ns))  # the sender caught up meanwhile
                return
        enqueued = self._metrics.spill_enqueued
        enqueued[kind] = enqueued.get(kind, 0) + 1
        try:
            message = to_message(event, published_ns)
        except EventTooLargeError as error:
            self.dead_letter(event, published_ns, str(error))
            return
        with self.lock:
            try:
                segment = self._overflow_segment()
                segment.append(encode_record(message))
            except SpoolWriteError as error:
                enqueued[kind] -= 1  # the sender will count it
                self._keep_in_memory(event, published_ns, error)
                return
        overflowed = self._metrics.overflowed
        overflowed[kind] = overflowed.get(kind, 0) + 1

    def _overflow_segment(self) -> Segment:
        segment = self._spool.overflow
        if not self.overflowing or segment is None:
            segment = self._spool.create_overflow()
            self.overflowing = True
            self._on_overflow(True)
            self.queue.append(OVERFLOW_MARKER)
        return segment

    def _keep_in_memory(self, event: CloudEvent[Any], published_ns: int, error: Exception) -> None:
        self.queue.append((event, published_ns))
        now = time.monotonic()
        if now - self._disk_error_logged > 10.0:
            self._disk_error_logged = now
            logger.error("queue full and spool unwritable (%s); holding events in memory", error)

    def take_overflow(self) -> Segment | None:
        """The sender reached the marker: `publish()` returns to the deque."""
        with self.lock:
            self.overflowing = False
            self._on_overflow(False)
            segment = self._spool.overflow
            self._spool.overflow = None
            return segment

    def dead_letter(self, event: CloudEvent[Any], published_ns: int, reason: str) -> None:
        dead_letter(self._spool, self._metrics, raw_message(event, published_ns), reason)


def dead_letter(spool: Spool, metrics: PublisherMetrics, message: Message, reason: str) -> None:
    """Keep an event Kafka can never take in the dead-letter file, with the reason; count
    it as failed; log it by id (never its payload)."""
    context = {"session_id": message.session_id, "event_id": message.event_id}
    try:
        spool.dead_letters.write(message, reason)
    except OSError as error:
        metrics.count_dropped()
        logger.error(
            "event %s of session %s (%s) lost: it cannot be sent (%s) and the dead-letter "
            "file is unwritable (%s)", message.event_id, message.session_id, message.type,
            reason, error, extra=context,
        )
        return
    metrics.count_failed(message.type)
    logger.error(
        "event %s of session %s (%s) dead-lettered in %s: %s", message.event_id,
        message.session_id, message.type, spool.dead_letters.path, reason, extra=context,
    )
