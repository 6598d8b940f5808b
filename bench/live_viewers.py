"""Live viewers benchmark: 100 Server-Sent Event viewers of one session on ONE API
process, delay from Kafka's acknowledgement of an event to each viewer receiving it,
against a plain Kafka consumer reading the same events.

    .venv/bin/python -m bench.live_viewers [--rounds 3] [--viewers 1 100] [--rate 20]
        [--seconds 10] [--burst 300] [--seed 7]

Per round and viewer count (the order alternates between rounds): a fresh session
whose opening (5 events) is written to Kafka and projected into PostgreSQL (so the API
knows it); N viewers open `GET /v1/sessions/{id}/live` (aiohttp, Bearer key, one
connection each) and a baseline `AIOKafkaConsumer` (no group, assigned to the session's
partition at its end, `fetch_max_wait_ms=100` like the API's hub) starts; once every
viewer said `ready`, a producer (acks=all) sends `--rate` events/s for `--seconds` s
(steady), then `--burst` events back to back (burst), then the closing events.

Measured, per viewer and event: receipt time (the chunk holding it arrives at the
client) minus the time the producer saw Kafka's acknowledgement (`send` future done),
one monotonic clock, all clients in this one process. Included: the broker's fetch
long-poll, the hub's Kafka reader, its fan-out, the per-viewer queue, SSE framing,
uvicorn, loopback TCP and the client's read. Excluded: the gateway, projection and
browser. A negative delay means the record reached the viewer before the producer
processed its acknowledgement. Each viewer must get sequences 1..last exactly once in
order (history + live); losses, duplicates and reorders are counted. API CPU is read
from /proc during steady and burst. The load generator (clients, producer, baseline
consumer), the API and the Kafka broker share this machine's cores (2 here), so client
parsing and broker time are part of every figure, baseline included.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.live_support import (
    BOOTSTRAP,
    LiveSession,
    Platform,
    cpu_seconds,
    live_session,
    produce,
    project,
    running_api,
)
from bench.publish_support import percentile
from turnlog.schemas import CloudEvent, encode

CLOSED: Final = b"turnlog.session.closed.v1"
READY_TIMEOUT_S: Final = 60.0
END_TIMEOUT_S: Final = 60.0


@dataclass
class ViewerLog:
    """What one viewer got: (sequence, receipt time) in arrival order."""

    received: list[tuple[int, float]] = field(default_factory=list)
    ready_at: float | None = None
    history: int = 0
    error: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on `ready`, or when the stream ends before it."""


@dataclass
class Phase:
    """The delays of one phase (steady or burst), in ms, over all viewers and events."""

    viewer_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    api_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    """CPU of this process (viewers, producer, baseline consumer)."""
    wall_s: float = 0.0


@dataclass
class Run:
    viewers: int
    ready_s: float
    """From opening the connections until every viewer said `ready`."""
    phases: dict[str, Phase]
    lost: int
    duplicated: int
    reordered: int
    errors: int


async def watch(client: aiohttp.ClientSession, url: str, log: ViewerLog) -> None:
    """Read one live stream until session.closed, noting each event's receipt time."""
    try:
        await _read(client, url, log)
    except (aiohttp.ClientError, OSError) as error:
        log.error = repr(error)
    finally:
        log.settled.set()


async def _read(client: aiohttp.ClientSession, url: str, log: ViewerLog) -> None:
    buffer = b""
    async with client.get(url) as response:
        if response.status != 200:
            log.error = f"HTTP {response.status}: {(await response.text())[:200]}"
            return
        async for chunk in response.content.iter_any():
            now = time.perf_counter()
            buffer += chunk
            *messages, buffer = buffer.split(b"\n\n")
            for message in messages:
                if _note(message, now, log) is not False:
                    return


def _note(message: bytes, now: float, log: ViewerLog) -> bool | None:
    """Record one SSE message; True after session.closed, None on an `error` message."""
    event_id, event = None, b""
    for line in message.split(b"\n"):
        if line.startswith(b"id: "):
            event_id = int(line[4:])
        elif line.startswith(b"event: "):
            event = line[7:]
        elif line.startswith(b"data: ") and event == b"ready":
            log.ready_at, log.history = now, int(json.loads(line[6:])["history"])
            log.settled.set()
        elif line.startswith(b"data: ") and event == b"error":
            log.error = line[6:].decode()
            return None
    if event_id is not None:
        log.received.append((event_id, now))
    return event == CLOSED


async def baseline(
    consumer: AIOKafkaConsumer, tp: TopicPartition, received: dict[int, float], stop: asyncio.Event
) -> None:
    """The plain consumer: note each record's receipt time by offset."""
    while not stop.is_set():
        batches = await consumer.getmany(tp, timeout_ms=200)
        now = time.perf_counter()
        for record in batches.get(tp, []):
            received.setdefault(record.offset, now)


class Sender:
    """The producer of the live events: acknowledgement time by sequence and by offset."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.acked: dict[int, float] = {}
        self.offsets: dict[int, int] = {}
        self.pending: list[asyncio.Future[Any]] = []

    async def send(self, event: CloudEvent[Any]) -> None:
        future = await self.producer.send(self.topic, encode(event), key=event.sessionid.encode())
        future.add_done_callback(self._acked(event.sequence))
        self.pending.append(future)

    def _acked(self, sequence: int) -> Callable[[asyncio.Future[Any]], None]:
        def done(future: asyncio.Future[Any]) -> None:
            self.acked[sequence] = time.perf_counter()
            self.offsets[future.result().offset] = sequence

        return done

    async def drain(self) -> None:
        await asyncio.gather(*self.pending)
        self.pending.clear()


async def steady(sender: Sender, events: list[CloudEvent[Any]], rate: float) -> None:
    start = time.perf_counter()
    for n, event in enumerate(events):
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await sender.send(event)
    await sender.drain()


async def burst(sender: Sender, events: list[CloudEvent[Any]]) -> None:
    for event in events:
        await sender.send(event)
    await sender.drain()


async def one_run(platform: Platform, *, viewers: int, args: argparse.Namespace, seed: int) -> Run:
    session_id = f"live_{uuid.uuid4().hex[:10]}"
    steady_n = int(args.rate * args.seconds)
    session = live_session(session_id, events=steady_n + args.burst, seed=seed)
    written = await produce(platform.topic, session.opening)
    await asyncio.to_thread(project, platform.schema, platform.topic, session.opening, written)
    tp = TopicPartition(platform.topic, written[0].partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100)  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    base_received: dict[int, float] = {}
    stop = asyncio.Event()
    reader = asyncio.create_task(baseline(consumer, tp, base_received, stop))
    headers = {"Authorization": f"Bearer {platform.key}"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as http:
        try:
            return await _watched(platform, session, http, Sender(producer, platform.topic),
                                  base_received, viewers=viewers, args=args)  # fmt: skip
        finally:
            stop.set()
            await reader
            await consumer.stop()
            await producer.stop()


async def _watched(
    platform: Platform,
    session: LiveSession,
    http: aiohttp.ClientSession,
    sender: Sender,
    base_received: dict[int, float],
    *,
    viewers: int,
    args: argparse.Namespace,
) -> Run:
    url = f"{platform.url}/v1/sessions/{session.opening[0].sessionid}/live"
    logs = [ViewerLog() for _ in range(viewers)]
    opened = time.perf_counter()
    tasks = [asyncio.create_task(watch(http, url, log)) for log in logs]
    async with asyncio.timeout(READY_TIMEOUT_S):
        await asyncio.gather(*(log.settled.wait() for log in logs))
    ready_s = max(log.ready_at or opened for log in logs) - opened
    steady_n = int(args.rate * args.seconds)
    phases: dict[str, Phase] = {}
    for name, events in (("steady", session.live[:steady_n]), ("burst", session.live[steady_n:])):
        cpu, client, wall = cpu_seconds(platform.pid), time.process_time(), time.perf_counter()
        if name == "steady":
            await steady(sender, events, args.rate)
        else:
            await burst(sender, events)
        await asyncio.sleep(1.0)  # let the last ones arrive
        phases[name] = Phase(api_cpu_s=cpu_seconds(platform.pid) - cpu,
                             client_cpu_s=time.process_time() - client,
                             wall_s=time.perf_counter() - wall)  # fmt: skip
        _delays(phases[name], events, sender, logs, base_received)
    for event in session.closing:
        await sender.send(event)
    await sender.drain()
    async with asyncio.timeout(END_TIMEOUT_S):
        await asyncio.gather(*tasks)
    last = session.closing[-1].sequence
    lost, duplicated, reordered = _integrity(logs, last)
    return Run(viewers, ready_s, phases, lost, duplicated, reordered,
               sum(log.error is not None for log in logs))  # fmt: skip


def _delays(
    phase: Phase,
    events: list[CloudEvent[Any]],
    sender: Sender,
    logs: list[ViewerLog],
    base_received: dict[int, float],
) -> None:
    sequences = {e.sequence for e in events}
    for log in logs:
        for sequence, at in log.received:
            if sequence in sequences:
                phase.viewer_ms.append((at - sender.acked[sequence]) * 1000)
    for offset, at in base_received.items():
        written = sender.offsets.get(offset)
        if written is not None and written in sequences:
            phase.baseline_ms.append((at - sender.acked[written]) * 1000)


def _integrity(logs: list[ViewerLog], last: int) -> tuple[int, int, int]:
    lost = duplicated = reordered = 0
    for log in logs:
        got = [sequence for sequence, _ in log.received]
        lost += len(set(range(1, last + 1)) - set(got))
        duplicated += len(got) - len(set(got))
        reordered += sum(b <= a for a, b in itertools.pairwise(got))
    return lost, duplicated, reordered


def _medians(phases: list[Phase]) -> dict[str, float]:
    """Medians over rounds of each round's percentiles and CPU share."""
    per_round = [
        {
            "p50": percentile(p.viewer_ms, 0.5),
            "p99": percentile(p.viewer_ms, 0.99),
            "max": max(p.viewer_ms),
            "b50": percentile(p.baseline_ms, 0.5),
            "b99": percentile(p.baseline_ms, 0.99),
            "cpu": p.api_cpu_s / p.wall_s,
            "client": p.client_cpu_s / p.wall_s,
            "us": p.api_cpu_s / max(1, len(p.viewer_ms)) * 1e6,
        }
        for p in phases
    ]
    return {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}


def report(runs: list[Run], args: argparse.Namespace) -> None:
    print(
        f"\n{args.rounds} rounds (medians over rounds of each round's percentiles); "
        f"steady {args.rate:g}/s x {args.seconds:g} s, burst {args.burst}; seed {args.seed}\n"
        "delays in ms from Kafka's ack to receipt; base = plain aiokafka consumer; CPU as a "
        "share of one core over the phase (+1 s tail); us/deliv = API CPU per delivery"
    )
    print(
        f"{'viewers':>7} {'phase':<7} {'deliveries':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'base p50':>8} {'base p99':>8} {'p50/base':>8} {'p99/base':>8} "
        f"{'API CPU':>7} {'us/deliv':>8} {'gen CPU':>7}"
    )
    for viewers in args.viewers:
        mine = [r for r in runs if r.viewers == viewers]
        for name in ("steady", "burst"):
            phases = [r.phases[name] for r in mine]
            row = _medians(phases)
            print(
                f"{viewers:>7} {name:<7} {len(phases[0].viewer_ms):>10,} {row['p50']:>7.1f} "
                f"{row['p99']:>7.1f} {row['max']:>7.1f} {row['b50']:>8.1f} {row['b99']:>8.1f} "
                f"{row['p50'] / row['b50']:>8.2f} {row['p99'] / row['b99']:>8.2f} "
                f"{row['cpu']:>7.0%} {row['us']:>8.0f} {row['client']:>7.0%}"
            )
    print(f"\n{'viewers':>7} {'ready s':>7} {'lost':>5} {'dup':>5} {'reorder':>7} {'errors':>6}")
    for viewers in args.viewers:
        mine = [r for r in runs if r.viewers == viewers]
        print(
            f"{viewers:>7} {statistics.median(r.ready_s for r in mine):>7.2f} "
            f"{sum(r.lost for r in mine):>5} {sum(r.duplicated for r in mine):>5} "
            f"{sum(r.reordered for r in mine):>7} {sum(r.errors for r in mine):>6}"
        )
    worst = max(percentile(r.phases[n].viewer_ms, 0.99) for r in runs for n in ("steady", "burst"))
    print(f"\ngoal: delivered <= 250 ms after written; worst round p99: {worst:.1f} ms")


async def main_async(platform: Platform, args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    for round_ in range(args.rounds):
        order = args.viewers if round_ % 2 == 0 else list(reversed(args.viewers))
        for viewers in order:
            seed = args.seed + 1000 * round_ + viewers
            run = await one_run(platform, viewers=viewers, args=args, seed=seed)
            runs.append(run)
            s = run.phases["steady"]
            print(
                f"round {round_ + 1} viewers {viewers:>3}: ready {run.ready_s:.2f} s, "
                f"steady p50 {percentile(s.viewer_ms, 0.5):.1f} ms p99 "
                f"{percentile(s.viewer_ms, 0.99):.1f} ms (baseline p99 "
                f"{percentile(s.baseline_ms, 0.99):.1f} ms), burst p99 "
                f"{percentile(run.phases['burst'].viewer_ms, 0.99):.1f} ms, lost "
                f"{run.lost} dup {run.duplicated} errors {run.errors}",
                flush=True,
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--rate", type=float, default=20, help="steady events per second")
    parser.add_argument("--seconds", type=float, default=10, help="steady phase length")
    parser.add_argument("--burst", type=int, default=300, help="events sent back to back")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"seed {args.seed}; load generator, API and Kafka share this machine's cores")
    with running_api("bench_live") as platform:
        runs = asyncio.run(main_async(platform, args))
    report(runs, args)


if __name__ == "__main__":
    main()
