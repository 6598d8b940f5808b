"""Batches handed to the producer and not yet settled, in the order they were sent.

Settling a batch: acknowledged (count it as sent, observe its latency, acknowledge its
spool records); rejected for its content (one record: dead-letter it; several: flag
them to be sent one by one, to find the culprit); any other failure (leave it
unacknowledged). Any failure also marks the producer as failed (`failure`): after a
failed batch the partition's sequence numbers have a gap, and aiokafka would fail every
later batch of it, so the sender abandons the producer.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnlog.agent_gateway.publisher.handoff import dead_letter
from turnlog.agent_gateway.publisher.kafka import REJECTED_RECORD_ERRORS
from turnlog.agent_gateway.publisher.message import Message
from turnlog.agent_gateway.publisher.metrics import PublisherMetrics
from turnlog.agent_gateway.publisher.spool import DrainItem, Spool


@dataclass(eq=False, slots=True)
class Inflight:
    """One record batch handed to the producer."""

    messages: list[Message]
    future: asyncio.Future[Any]
    deadline: float
    items: list[DrainItem] | None = None
    """The spool records it carries; None when the events came straight from the deque."""
    settled: bool = False
    unacked: bool = False


class Deliveries:
    """The in-flight batches of the current producer."""

    def __init__(self, *, spool: Spool, metrics: PublisherMetrics,
                 on_complete: Callable[[], None]) -> None:
        self._spool = spool
        self._metrics = metrics
        self._on_complete = on_complete
        self.batches: deque[Inflight] = deque()
        self.completed: deque[Inflight] = deque()
        self.spool_records = 0
        """Spooled records in flight (the drain window)."""
        self.solo: Inflight | None = None
        """A record sent alone; nothing else is read from the spool until it settles."""
        self.failure: str | None = None
        self.acknowledged_any = False

    def __bool__(self) -> bool:
        return bool(self.batches or self.completed)

    def track(self, messages: list[Message], future: asyncio.Future[Any], *,
              deadline: float, items: list[DrainItem] | None) -> Inflight:
        inflight = Inflight(messages, future, deadline, items)
        self.batches.append(inflight)
        if items is not None:
            self.spool_records += len(items)
        future.add_done_callback(functools.partial(self._done, inflight))
        return inflight

    def _done(self, inflight: Inflight, _future: asyncio.Future[Any]) -> None:
        self.completed.append(inflight)
        self._on_complete()

    def collect(self) -> None:
        """Settle what completed since the last call."""
        completed = self.completed
        while completed:
            self._settle(completed.popleft())
        batches = self.batches
        while batches and batches[0].settled and not batches[0].unacked:
            batches.popleft()  # failed ones stay: the teardown rescues them in order

    def overdue(self, now: float) -> bool:
        """The oldest unsettled batch waited longer than `delivery_timeout`."""
        for inflight in self.batches:
            if not inflight.settled:
                return now > inflight.deadline and not inflight.future.done()
        return False

    def next_deadline(self) -> float | None:
        return self.batches[0].deadline if self.batches else None

    def direct_pending(self) -> list[Inflight]:
        return [b for b in self.batches if b.items is None and not b.settled]

    def abandon(self) -> list[Message]:
        """After the producer was aborted: settle every batch (a future not done by now
        never will be) and return the events sent straight and not acknowledged, in
        the order they were sent. Spooled records stay in their segment."""
        rescue: list[Message] = []
        for inflight in self.batches:
            if not inflight.settled:
                if not inflight.future.done():
                    inflight.future.cancel()
                self._settle(inflight)
            if inflight.items is None and inflight.unacked:
                rescue.extend(inflight.messages)
        self.batches.clear()
        self.completed.clear()
        self.spool_records = 0
        self.solo = None
        self.failure = None
        return rescue

    def _settle(self, inflight: Inflight) -> None:
        if inflight.settled:
            return
        inflight.settled = True
        if inflight.items is not None:
            self.spool_records -= len(inflight.items)
        if self.solo is inflight:
            self.solo = None
        future = inflight.future
        error: BaseException | None = (
            asyncio.CancelledError() if future.cancelled() else future.exception()
        )
        if error is None:
            self._acknowledged(inflight)
        elif isinstance(error, REJECTED_RECORD_ERRORS):
            self._rejected(inflight, error)
        else:
            inflight.unacked = True
            self._fail(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason

    def _acknowledged(self, inflight: Inflight) -> None:
        now_ns = time.time_ns()
        sent = self._metrics.sent
        observe = self._metrics.observe_latency
        for message in inflight.messages:
            sent[message.type] = sent.get(message.type, 0) + 1
            observe(max(0, now_ns - message.published_ns) / 1e9)
        if inflight.items is not None:
            for item in inflight.items:
                item.acknowledged()
        self.acknowledged_any = True

    def _rejected(self, inflight: Inflight, error: BaseException) -> None:
        """The broker refused the batch's content. One record: it can never be sent.
        Several: find the culprit by sending them one at a time."""
        self._fail(f"batch rejected: {type(error).__name__}")  # a sequence gap follows
        if len(inflight.messages) == 1:
            dead_letter(self._spool, self._metrics, inflight.messages[0],
                        f"rejected by the broker: {type(error).__name__}: {error}")
            if inflight.items is not None:
                inflight.items[0].acknowledged()
            return
        inflight.unacked = True
        for message in inflight.messages:
            message.isolate = True
        for item in inflight.items or ():
            item.isolate()
