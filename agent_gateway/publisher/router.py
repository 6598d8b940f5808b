"""Routing: where each event goes, and the producer's life. The rule that keeps each
session in order: an event goes straight to the producer only while the producer is
healthy and the spool holds nothing unread; otherwise it is appended to the spool,
behind everything there, and the spool drains in order when Kafka is back. Two corners:
- a producer failure: batches sent straight and not acknowledged were taken from the
  deque after everything in the spool had been read, so they go back to the spool's tail
  (through `backlog`), and spooled records in flight are re-read from their segment;
- the overflow marker: before its segment joins the spool, every batch sent straight
  must be settled (the barrier), since the segment holds newer events than those.

Every producer call is bounded; a producer that fails once (error, or no ack within
`delivery_timeout`) is abandoned and rebuilt with exponential backoff, which is also how
a down broker is probed. A batch the broker rejects for its content (too large...) is
retried record by record; a single record it rejects is dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from turnlog.agent_gateway.publisher.deliveries import Deliveries
from turnlog.agent_gateway.publisher.errors import BrokerUnavailableError, SpoolWriteError
from turnlog.agent_gateway.publisher.handoff import OVERFLOW_MARKER, Handoff, dead_letter
from turnlog.agent_gateway.publisher.kafka import Connect, KafkaLink, Link
from turnlog.agent_gateway.publisher.message import Message, raw_message, to_message
from turnlog.agent_gateway.publisher.metrics import PublisherMetrics
from turnlog.agent_gateway.publisher.settings import PublisherSettings
from turnlog.agent_gateway.publisher.spool import DrainItem, Spool
from turnlog.schemas import EventTooLargeError

logger = logging.getLogger("turnlog.gateway.publisher")

_MAX_TAKE = 4096
_LINGER_ENOUGH = 512
"""Queued events that are sent at once, lingering or not."""
"""Events taken from the deque per step, so that acks and timers are served between."""


@dataclass
class SenderState:
    """What `Publisher.stats()` reads from the sender."""

    connected: bool = False
    producer_rebuilds: int = 0
    last_error: str | None = None


class Router:
    """Moves events from the handoff deque to Kafka or the spool, and the spool to Kafka;
    owns the producer. Runs on the sender thread only."""

    def __init__(self, settings: PublisherSettings, *, handoff: Handoff, spool: Spool,
                 metrics: PublisherMetrics, connect: Connect = KafkaLink.connect) -> None:
        self._settings = settings
        self._connect_link = connect
        self._handoff = handoff
        self._spool = spool
        self._metrics = metrics
        self.state = SenderState()
        self._link: Link | None = None
        self._broken: str | None = None
        self._deliveries = Deliveries(spool=spool, metrics=metrics, on_complete=self._on_complete)
        self._backlog: deque[Message] = deque()
        """Events taken from the deque (or rescued) that are neither sent nor on disk."""
        self._unsent: list[Message] = []
        self._backoff = settings.reconnect_backoff
        self._next_connect = 0.0
        self._disk_retry_at = 0.0
        self._last_event = 0.0
        self._last_take = 0.0
        self._flush_now = False
        """Set while stopping: take what is queued at once, without lingering."""
        self._wake: asyncio.Event | None = None

    # -- producer ----------------------------------------------------------------------
    async def _connect(self) -> None:
        if self._link is not None or time.monotonic() < self._next_connect:
            return
        try:
            self._link = await self._connect_link(self._settings)
        except BrokerUnavailableError as error:
            self._next_connect = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._settings.reconnect_backoff_max)
            first = self.state.connected or self.state.last_error is None
            logger.log(logging.WARNING if first else logging.DEBUG,
                       "Kafka unavailable, spooling events: %s", error)
            self.state.last_error = str(error)
            self.state.connected = False
            return
        self.state.connected = True
        logger.info("producer connected to %s", self._settings.bootstrap_servers)

    def _fail(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason

    async def _teardown(self, *, within: float | None = None) -> None:
        """Abandon the producer; whatever it did not acknowledge goes back to disk."""
        link, self._link = self._link, None
        reason, self._broken = self._broken, None
        if link is not None:
            await link.abort(within=within or self._settings.stop_timeout)
            await asyncio.sleep(0)  # let the batch futures' callbacks run
        rescue = self._deliveries.abandon()
        rescue.extend(self._unsent)
        self._unsent = []
        self._spool.rewind()
        self._backlog.extendleft(reversed(rescue))
        self._broken = None
        self.state.connected = False
        if link is not None:
            self.state.producer_rebuilds += 1
            self._next_connect = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._settings.reconnect_backoff_max)
            logger.warning(
                "producer abandoned (%s); %d unacknowledged events go back to the spool",
                reason, len(rescue),
            )

    # -- deque and backlog -> Kafka or spool -------------------------------------------
    async def _route(self) -> bool:
        if self._backlog:
            if self._link is None and time.monotonic() < self._disk_retry_at:
                return False
            messages = list(self._backlog)
            self._backlog.clear()
            await self._dispatch(messages)
            if self._backlog:
                return False  # the disk is failing; try again later
        if self._lingering():
            return False
        items, marker = self._take()
        if items:
            self._last_event = self._last_take = time.monotonic()
            await self._dispatch(items)
        if marker:
            await self._link_overflow()
        return bool(items) or marker

    def _lingering(self) -> bool:
        """Whether queued events should wait to join more: for `linger` after the last
        take, unless the queue is already a batch's worth or the sender is stopping.
        Acknowledgements wake the sender every millisecond or two; taking what each of
        those moments brought made produce requests of one or two events (measured: 2,496
        record batches for 4,000 events of the voice pattern), and the per-batch work of
        aiokafka, not the events, was most of the sender's CPU."""
        queue = self._handoff.queue
        if not queue or self._flush_now or len(queue) >= _LINGER_ENOUGH:
            return False
        return time.monotonic() - self._last_take < self._settings.linger

    def linger_deadline(self) -> float | None:
        """When lingering events are due (monotonic), None when none wait."""
        if not self._handoff.queue or self._flush_now:
            return None
        return self._last_take + self._settings.linger

    def _take(self) -> tuple[list[Message], bool]:
        """Encode what the deque holds, up to the overflow marker (and whether it came)."""
        items: list[Message] = []
        queue = self._handoff.queue
        enqueued = self._metrics.enqueued
        while queue and len(items) < _MAX_TAKE:
            item = queue.popleft()
            if item is OVERFLOW_MARKER:
                return items, True
            event, published_ns = item  # type: ignore[misc]
            kind = getattr(event, "type", "invalid")
            enqueued[kind] = enqueued.get(kind, 0) + 1
            try:
                items.append(to_message(event, published_ns))
            except EventTooLargeError as error:
                dead_letter(self._spool, self._metrics, raw_message(event, published_ns),
                            str(error))
            except Exception:  # not an event at all: a caller's bug must not stop the rest
                logger.exception("publish() got something that is not a CloudEvent: %s",
                                 type(event).__name__)
                self._metrics.count_failed("invalid")
        return items, False

    async def _dispatch(self, messages: list[Message]) -> None:
        if self._broken is not None:
            self._unsent.extend(messages)  # behind what the teardown will rescue
        elif self._link is not None and not self._spool.has_unread():
            await self._send_direct(messages)
        else:
            self._to_spool(messages)

    def _to_spool(self, messages: list[Message]) -> None:
        try:
            self._spool.append(messages)
        except SpoolWriteError as error:
            self._backlog.extendleft(reversed(messages))
            self._disk_retry_at = time.monotonic() + 1.0
            logger.error("spool unwritable, holding %d events in memory: %s",
                         len(self._backlog), error)
            return
        spooled = self._metrics.spooled
        for message in messages:
            spooled[message.type] = spooled.get(message.type, 0) + 1

    async def _link_overflow(self) -> None:
        """Put the overflow segment in line; first settle every batch sent straight
        (they hold older events), and persist any backlog."""
        direct = self._deliveries.direct_pending()
        if direct:
            wait = max(0.0, min(b.deadline for b in direct) - time.monotonic())
            await asyncio.wait([b.future for b in direct], timeout=wait)
            self._collect()
            if self._deliveries.direct_pending():
                self._fail("no acknowledgement within delivery_timeout")
        if self._broken is not None:
            await self._teardown()
        if self._backlog:
            messages = list(self._backlog)
            self._backlog.clear()
            self._to_spool(messages)
        if self._backlog:
            self._handoff.queue.appendleft(OVERFLOW_MARKER)  # retry once the disk works
            return
        segment = self._handoff.take_overflow()
        if segment is not None:
            self._spool.link_overflow(segment)

    async def _send_direct(self, messages: list[Message]) -> None:
        link = self._link
        if link is None:
            self._to_spool(messages)
            return
        groups: dict[int, list[Message]] = {}
        for message in messages:
            groups.setdefault(link.partition(message.key), []).append(message)
        ordered = list(groups.items())
        for index, (partition, members) in enumerate(ordered):
            sent = await self._send_group(link, partition, members)
            if sent < len(members):
                self._unsent.extend(members[sent:])
                for _, later in ordered[index + 1:]:
                    self._unsent.extend(later)
                return

    async def _send_group(self, link: Link, partition: int, messages: list[Message],
                          items: list[DrainItem] | None = None) -> int:
        """Send `messages` of one partition in batches; returns how many were handed over
        (fewer when the producer failed)."""
        done = 0
        for batch, count in link.batches(messages):
            try:
                future = await link.send(batch, partition)
            except Exception as error:  # any failure here condemns this producer
                self._fail(f"send failed: {type(error).__name__}: {error}")
                return done
            self._deliveries.track(
                messages[done:done + count], future,
                deadline=time.monotonic() + self._settings.delivery_timeout,
                items=None if items is None else items[done:done + count],
            )
            done += count
        return done

    # -- spool -> Kafka ----------------------------------------------------------------
    async def _drain(self) -> bool:
        link = self._link
        deliveries = self._deliveries
        if link is None or self._broken is not None or deliveries.solo is not None:
            return False
        budget = self._settings.drain_window - deliveries.spool_records
        if budget <= 0:
            return False
        items = self._spool.read(
            max_records=budget, max_bytes=self._settings.drain_read_bytes,
            allow_isolated=not deliveries,
        )
        if not items:
            if not self._spool.has_unread():
                self._spool.seal_drained_writer()
            return False
        groups: dict[int, list[DrainItem]] = {}
        for item in items:
            groups.setdefault(link.partition(item.record.message.key), []).append(item)
        for partition, members in groups.items():
            messages = [item.record.message for item in members]
            if await self._send_group(link, partition, messages, members) < len(members):
                break  # the rest stays unsettled; the teardown re-reads it
        if items[0].record.message.isolate and deliveries.batches:
            deliveries.solo = deliveries.batches[-1]
        return True

    # -- acknowledgements --------------------------------------------------------------
    def _on_complete(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _collect(self) -> None:
        deliveries = self._deliveries
        deliveries.collect()
        if deliveries.acknowledged_any:
            deliveries.acknowledged_any = False
            self._backoff = self._settings.reconnect_backoff
        if deliveries.failure is not None:
            self._fail(deliveries.failure)
