"""The sender: the publisher's own event loop, in its own thread, between the handoff
deque and Kafka. Encoding, batching, compression, disk and network I/O all run here,
never on the voice loop. `Router` decides where events go; this module runs the loop:
one step at a time, idling when there is nothing to do, and the shutdown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time

from turnlog.agent_gateway.publisher.errors import PublisherError
from turnlog.agent_gateway.publisher.handoff import Handoff
from turnlog.agent_gateway.publisher.kafka import Connect, KafkaLink
from turnlog.agent_gateway.publisher.metrics import PublisherMetrics
from turnlog.agent_gateway.publisher.router import Router
from turnlog.agent_gateway.publisher.settings import PublisherSettings
from turnlog.agent_gateway.publisher.spool import Spool

logger = logging.getLogger("turnlog.gateway.publisher")

_MAX_BLOCK = 0.25
"""Longest the idle sender blocks its loop (aiokafka's timers wait that long at most)."""


class Sender(Router):
    """Runs `run()` on the sender thread's loop until a stop request has been served."""

    def __init__(self, settings: PublisherSettings, *, handoff: Handoff, spool: Spool,
                 metrics: PublisherMetrics, connect: Connect = KafkaLink.connect) -> None:
        super().__init__(settings, handoff=handoff, spool=spool, metrics=metrics,
                         connect=connect)
        self._dirty_since: float | None = None
        self._next_adopt = time.monotonic() + settings.adopt_interval
        self._stop_request: tuple[float, concurrent.futures.Future[None]] | None = None
        self._stop_at: float | None = None
        self._give_up_within = 0.0
        self._stopped: concurrent.futures.Future[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self, ready: concurrent.futures.Future[None]) -> None:
        self._wake = asyncio.Event()
        try:
            self._spool.open()
            self._spool.adopt_orphans()
        except OSError as error:
            ready.set_exception(PublisherError(
                f"spool folder {self._spool.directory} is unusable: {error}"))
            return
        ready.set_result(None)
        while True:
            try:
                if await self._step():
                    return
            except Exception:
                logger.exception("publisher sender step failed; retrying")
                self._fail("internal error")
                await asyncio.sleep(self._settings.reconnect_backoff)

    def request_stop(self, deadline: float, done: concurrent.futures.Future[None]) -> None:
        """From the voice thread: flush until `deadline` (monotonic), keeping a reserve
        to put what is left on disk; `done` resolves when the sender has finished."""
        self._stop_request = (deadline, done)
        self._handoff.bell.ring()

    def _take_stop_request(self) -> None:
        request, self._stop_request = self._stop_request, None
        if request is not None and self._stopped is None:
            self._flush_now = True
            deadline, self._stopped = request
            reserve = min(2.0, max(0.05, (deadline - time.monotonic()) / 4))
            self._stop_at = deadline - reserve
            self._give_up_within = reserve / 2

    # -- one step ----------------------------------------------------------------------
    async def _step(self) -> bool:
        self._take_stop_request()
        self._collect()
        if self._deliveries.overdue(time.monotonic()):
            self._fail("no acknowledgement within delivery_timeout")
        if self._broken is not None:
            await self._teardown()
        await self._connect()
        busy = await self._route()
        busy = await self._drain() or busy
        self._maintain()
        if self._stop_at is not None:
            if self._flushed():
                await self._finish(clean=True)
                return True
            if time.monotonic() >= self._stop_at:
                await self._finish(clean=False)
                return True
        if not busy:
            await self._idle()
        return False

    def _flushed(self) -> bool:
        return not (
            self._handoff.queue or self._backlog or self._deliveries or self._unsent
            or self._spool.pending()
        )

    async def _idle(self) -> None:
        """Wait for work: an ack, a timer, or the next look at the queue (`linger`, or
        `idle_linger` after a quiet second). With nothing in flight the loop has nothing
        to do, so the thread blocks in `Bell.sleep` (`publish()` can cut that short)."""
        now = time.monotonic()
        quiet = now - self._last_event > 1.0
        linger = self._settings.idle_linger if quiet else self._settings.linger
        wait = min(self._next_timer(), linger)
        wake = self._wake
        if self._deliveries:
            if wake is not None and not wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await wake.wait()
            if wake is not None:
                wake.clear()
            return
        await asyncio.sleep(0)  # run what the loop has ready before blocking it
        handoff = self._handoff
        bell = handoff.bell
        bell.sleeping = True
        if not (self._deliveries or self._stop_request) and (
            not handoff.queue or self._lingering()
        ):
            bell.sleep(min(wait, _MAX_BLOCK))  # lingering events are due within `wait`
        bell.sleeping = False

    def _next_timer(self) -> float:
        now = time.monotonic()
        timers = [now + 1.0, self._next_adopt]
        due = self.linger_deadline()
        if due is not None:
            timers.append(due)
        deadline = self._deliveries.next_deadline()
        if deadline is not None:
            timers.append(deadline)
        if self._link is None and (self._backlog or self._spool.pending()):
            timers.append(self._next_connect)
        if self._dirty_since is not None:
            timers.append(self._dirty_since + self._settings.fsync_interval)
        if self._backlog:
            timers.append(self._disk_retry_at)
        if self._stop_at is not None:
            timers.append(self._stop_at)
        return max(0.0, min(timers) - now)

    def _maintain(self) -> None:
        """Spool upkeep; a disk error here is logged, it does not stop the sending."""
        now = time.monotonic()
        try:
            self._spool.advance()
            if self._spool.dirty():
                if self._dirty_since is None:
                    self._dirty_since = now
                elif now - self._dirty_since >= self._settings.fsync_interval:
                    self._dirty_since = None
                    self._spool.sync()
            if now >= self._next_adopt:
                self._next_adopt = now + self._settings.adopt_interval
                self._spool.adopt_orphans()
        except OSError as error:
            logger.error("spool upkeep failed: %s", error)

    # -- shutdown ----------------------------------------------------------------------
    async def _finish(self, *, clean: bool) -> None:
        try:
            await self._flush_or_spool(clean=clean)
        finally:
            self.state.connected = False
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)

    async def _flush_or_spool(self, *, clean: bool) -> None:
        give_up = max(0.05, self._give_up_within)
        if clean:
            if self._link is not None:
                await self._link.close(within=give_up)
                self._link = None
        else:
            self._fail("shutting down")
            await self._teardown(within=give_up)
            self._next_connect = float("inf")
            deadline = time.monotonic() + give_up
            while (self._handoff.queue or self._backlog) and time.monotonic() < deadline:
                self._disk_retry_at = 0.0
                await self._route()
                if self._backlog:
                    break  # the disk refuses them
        if self._backlog:
            self._metrics.count_dropped(len(self._backlog))
            logger.error("%d events lost at shutdown: the spool is unwritable",
                         len(self._backlog))
            self._backlog.clear()
        try:
            self._spool.close()
        except OSError as error:
            logger.error("closing the spool failed: %s", error)
