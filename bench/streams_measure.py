"""What the streams benchmark measures, and how.

Producing: the simulated sessions (`streams_mix`) go to a scratch events topic keyed by
session id, either all at once (a backlog, for throughput) or in real time (each session
on its own clock; the event time is the moment it is sent). For every record the producer
keeps (partition, offset) -> event time.

Visibility: a reader polls what each sink has committed, the way a reader of the read
models would see it: PostgreSQL's `consumer_offsets` (committed in the same transaction
as the rows), ClickHouse's `positions` (written after a batch's inserts), through the
consumer's query endpoint since the consumer owns its chDB folder. A record at offset o of
partition p is visible once the sink's next offset for p is past o.

Freshness of an event = when a poll first saw it visible - its event time: producer
batching, Kafka, the consumer's batch wait, both writes, plus half a poll interval on
average (PostgreSQL polled every 50 ms, ClickHouse every 100 ms), so it slightly
overstates, the same way for every consumer.

Throughput of one sink = events between 10% and 90% of a backlog made visible, over the
time between: consumer start-up and the last partial batches do not count. Into both
(PostgreSQL and ClickHouse) = 90% of the backlog over the time from when both showed 10%
until both show all of it (`all_in_rate`); start-up (until both show an event) apart.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.streams_mix import Session, Step, session_steps
from turnlog.schemas import EventPayload, encode
from turnlog.streams.startup import PRODUCE_BYTES

Offsets = dict[int, int]
Sample = tuple[float, Offsets]
"""A poll: when (seconds since the epoch), and the next offset per partition."""


@dataclass
class ProducedLog:
    """Event time (seconds since the epoch) of every record produced, by position."""

    times: dict[int, dict[int, float]] = field(default_factory=dict)
    count: int = 0

    def record(self, partition: int, offset: int, event_time: float) -> None:
        self.times.setdefault(partition, {})[offset] = event_time
        self.count += 1


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    """As the gateway's publisher: idempotent, acks=all, lz4, a few ms of linger."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        compression_type="lz4", linger_ms=5, max_batch_size=256 * 1024,
        max_request_size=PRODUCE_BYTES,
    )  # fmt: skip


def session_id(run: str, n: int) -> str:
    return f"bench-{run}-{n:05d}"


async def produce_backlog(bootstrap: str, topic: str, *, sessions: int, turns: int,
                          seed: int, run: str) -> int:  # fmt: skip
    """Whole sessions (opening, `turns` turns, closing), interleaved as they would have
    happened, sent as fast as Kafka takes them. Returns how many."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    streams = [(Session(session_id(run, n), rng), start + timedelta(seconds=rng.uniform(0, 5)))
               for n in range(sessions)]  # fmt: skip
    producer = new_producer(bootstrap)
    await producer.start()
    count = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for session, at, payload in interleaved(streams, turns):
            event = session.event(payload, at)
            pending.append(await producer.send(topic, encode(event), key=session.id.encode()))
            if len(pending) >= 20_000:
                count += len(await asyncio.gather(*pending))
                pending = []
        count += len(await asyncio.gather(*pending))
    finally:
        await producer.stop()
    return count


def interleaved(streams: Sequence[tuple[Session, datetime]], turns: int) -> Any:
    """(session, time, payload) of every step of every session, in time order."""
    queue: list[tuple[datetime, int]] = []
    iterators = []
    for n, (session, start) in enumerate(streams):
        iterators.append(session_steps(session, start, turns=turns))
        heapq.heappush(queue, (start, n))
    while queue:
        at, n = heapq.heappop(queue)
        step = next(iterators[n], None)
        if step is None:
            continue
        at += timedelta(seconds=step[0])
        yield streams[n][0], at, step[1]
        heapq.heappush(queue, (at, n))


async def produce_live(bootstrap: str, topic: str, *, sessions: int, seconds: float,
                       seed: int, run: str, ramp: float = 5.0) -> ProducedLog:  # fmt: skip
    """Sessions in real time for `seconds` (each starting within the first `ramp`
    seconds, then turn after turn); each event is stamped and sent when its time comes."""
    rng = random.Random(seed)
    began = time.time()
    clock = _Clock()
    for n in range(sessions):
        session = Session(session_id(run, n), rng)
        clock.add(session, session_steps(session, datetime.now(UTC), turns=None),
                  began + rng.uniform(0, ramp))  # fmt: skip
    log = ProducedLog()
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        while time.time() < began + seconds:
            for session, payload in clock.due(time.time()):
                at = time.time()
                event = session.event(payload, datetime.fromtimestamp(at, UTC))
                future = await producer.send(topic, encode(event), key=session.id.encode())
                future.add_done_callback(_recorder(log, at))
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()
    return log


class _Clock:
    """The sessions' next steps, by due time."""

    def __init__(self) -> None:
        self._queue: list[tuple[float, int]] = []
        self._sessions: list[tuple[Session, Iterator[Step], EventPayload]] = []

    def add(self, session: Session, steps: Iterator[Step], start: float) -> None:
        delay, payload = next(steps)
        self._sessions.append((session, steps, payload))
        heapq.heappush(self._queue, (start + delay, len(self._sessions) - 1))

    def due(self, now: float) -> Iterator[tuple[Session, EventPayload]]:
        """The payloads due by `now`, each session's next step scheduled after it."""
        while self._queue and self._queue[0][0] <= now:
            at, n = heapq.heappop(self._queue)
            session, steps, payload = self._sessions[n]
            yield session, payload
            delay, following = next(steps)
            self._sessions[n] = (session, steps, following)
            heapq.heappush(self._queue, (at + delay, n))


def _recorder(log: ProducedLog, at: float) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            metadata = future.result()
            log.record(metadata.partition, metadata.offset, at)

    return done


class Poller(threading.Thread):
    """Polls `read` every `interval` seconds into `samples` until `stop()`; the sample's
    time is the middle of the read."""

    def __init__(self, name: str, read: Callable[[], Offsets], interval: float) -> None:
        super().__init__(name=f"poll-{name}", daemon=True)
        self.read = read
        self.interval = interval
        self.samples: list[Sample] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.time()
            try:
                offsets = self.read()
            except Exception:  # the sink is not there yet (starting), or busy: next poll
                self.errors += 1
            else:
                self.samples.append(((began + time.time()) / 2, offsets))
            self._halt.wait(max(0.0, self.interval - (time.time() - began)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def visible(self) -> int:
        return sum(self.samples[-1][1].values()) if self.samples else 0


def freshness(samples: Sequence[Sample], log: ProducedLog, *, since: float,
              until: float) -> list[float]:  # fmt: skip
    """Seconds from event time to first seen visible, for the events produced between
    `since` and `until` that became visible."""
    seen: Offsets = {}
    ages: list[float] = []
    for at, offsets in samples:
        for partition, next_offset in offsets.items():
            times = log.times.get(partition, {})
            for offset in range(seen.get(partition, 0), next_offset):
                produced = times.get(offset)
                if produced is not None and since <= produced < until:
                    ages.append(at - produced)
            seen[partition] = max(seen.get(partition, 0), next_offset)
    return ages


def time_to_reach(samples: Sequence[Sample], count: float) -> float | None:
    """When the visible total first reached `count`."""
    for at, offsets in samples:
        if sum(offsets.values()) >= count:
            return at
    return None


def sustained_rate(sinks: Sequence[Sequence[Sample]], total: int) -> float | None:
    """Events/s into every sink between 10% and 90% of `total`."""
    low = [time_to_reach(s, 0.1 * total) for s in sinks]
    high = [time_to_reach(s, 0.9 * total) for s in sinks]
    if any(t is None for t in (*low, *high)):
        return None
    start = max(t for t in low if t is not None)
    end = max(t for t in high if t is not None)
    return 0.8 * total / (end - start) if end > start else None


def all_in_rate(sinks: Sequence[Sequence[Sample]], total: int) -> float | None:
    """Events/s into all of `sinks` together: 90% of `total` over the time from when the
    last of them showed 10% (every one started: start-up is reported apart, see
    `first_seen`) until the last showed all of `total`."""
    low = [time_to_reach(s, 0.1 * total) for s in sinks]
    high = [time_to_reach(s, total) for s in sinks]
    if not sinks or any(t is None for t in (*low, *high)):
        return None
    start = max(t for t in low if t is not None)
    end = max(t for t in high if t is not None)
    return 0.9 * total / (end - start) if end > start else None


def first_seen(sinks: Sequence[Sequence[Sample]], since: float) -> float | None:
    """Seconds from `since` until every one of `sinks` showed an event (start-up)."""
    seen = [time_to_reach(s, 1) for s in sinks]
    if not sinks or any(t is None for t in seen):
        return None
    return max(t for t in seen if t is not None) - since


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (`q` in 0..1)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
