"""Voice-loop time per published event: `Publisher.publish()` against the seed designs'
way, an async hook awaiting a psycopg INSERT of the event into PostgreSQL.

    .venv/bin/python -m bench.publish_loop [--events 4000] [--repeats 5]

Both run against the shared local stack (`turnlog stack up`), same events, same run.
Patterns: `voice` (1 to 6 hooks, then a 1 ms pause: the loop idles between turns of
speech, as a real voice loop does) and `burst` (500 hooks back to back).

Reported per event, p50 and p99, each the median over the repeats:
- publisher: wall time of the `publish()` call (it is synchronous: that is exactly the
  time the loop is held), timer overhead subtracted;
- baseline: the CPU time the loop thread spends on the hook (`thread_time` across the
  awaited INSERT; nothing else runs on the loop), and the wall time the hook waits.
Also: lateness of a 5 ms ticker on the same loop while each workload runs. The sender
thread's work is off the loop but not off the GIL; this is where its cost shows.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from psycopg import sql

from bench.publish_support import (
    interleaved_events,
    mean_size,
    median,
    percentile,
    run_arguments,
    scratch_dir,
    scratch_topic,
)
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.infra.stack.config import load_settings
from turnlog.schemas import CloudEvent, encode

GOAL_P99_US = 20.0
GOAL_RATIO = 100.0
Hook = Callable[[CloudEvent[Any]], Awaitable[tuple[int, int]]]


@dataclass
class Run:
    """Per-event samples of one repeat, in nanoseconds."""

    loop_ns: list[int]
    wall_ns: list[int]
    lateness_ns: list[int]


def timer_overhead_ns() -> int:
    samples = []
    for _ in range(10_000):
        began = time.perf_counter_ns()
        samples.append(time.perf_counter_ns() - began)
    return int(percentile(samples, 0.5))


async def ticker(lateness: list[int], stop: asyncio.Event) -> None:
    """Sleeps 5 ms at a time and records how late it wakes up."""
    while not stop.is_set():
        due = time.perf_counter_ns() + 5_000_000
        await asyncio.sleep(0.005)
        lateness.append(max(0, time.perf_counter_ns() - due))


async def drive(events: list[CloudEvent[Any]], pattern: str, hook: Hook, seed: int) -> Run:
    """Fire `hook` for each event in the given pattern, with a ticker alongside."""
    rng = random.Random(seed)
    run = Run([], [], [])
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(run.lateness_ns, stop))
    until_pause = rng.randint(1, 6) if pattern == "voice" else 500
    for event in events:
        loop_ns, wall_ns = await hook(event)
        run.loop_ns.append(loop_ns)
        run.wall_ns.append(wall_ns)
        until_pause -= 1
        if until_pause == 0:
            await asyncio.sleep(0.001 if pattern == "voice" else 0.005)
            until_pause = rng.randint(1, 6) if pattern == "voice" else 500
    stop.set()
    await tick
    return run


async def publisher_runs(events: list[CloudEvent[Any]], pattern: str, repeats: int,
                         bootstrap: str, topic: str) -> list[Run]:
    overhead = timer_overhead_ns()
    with scratch_dir("publish-loop") as spool:
        publisher = Publisher(
            PublisherSettings(bootstrap_servers=bootstrap, topic=topic, spool_dir=spool),
            registry=CollectorRegistry(),
        )
        await publisher.start()
        await asyncio.sleep(1.0)  # connected, topic metadata known

        async def hook(event: CloudEvent[Any]) -> tuple[int, int]:
            began = time.perf_counter_ns()
            publisher.publish(event)
            spent = max(0, time.perf_counter_ns() - began - overhead)
            return spent, spent

        runs = []
        for repeat in range(repeats):
            runs.append(await drive(events, pattern, hook, seed=repeat))
            await wait_sent(publisher, len(events) * (repeat + 1))
        await publisher.aclose()
        stats = publisher.stats()
        if stats.dropped or stats.spooled:
            print(f"  note: publisher spooled {stats.spooled}, dropped {stats.dropped}")
    return runs


async def wait_sent(publisher: Publisher, target: int, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if publisher.stats().sent >= target:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {publisher.stats().sent} of {target} events sent")
        await asyncio.sleep(0.01)


async def baseline_runs(events: list[CloudEvent[Any]], pattern: str, repeats: int,
                        dsn: str) -> list[Run]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            table = sql.Identifier(schema, "events")
            await conn.execute(sql.SQL(
                "CREATE TABLE {} (id uuid PRIMARY KEY, session_id text NOT NULL, "
                "sequence integer NOT NULL, type text NOT NULL, body jsonb NOT NULL)"
            ).format(table))
            insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(table)

            async def hook(event: CloudEvent[Any]) -> tuple[int, int]:
                began_cpu, began = time.thread_time_ns(), time.perf_counter_ns()
                await conn.execute(insert, (event.id, event.sessionid, event.sequence,
                                            event.type, encode(event).decode()))
                return time.thread_time_ns() - began_cpu, time.perf_counter_ns() - began

            runs = []
            for repeat in range(repeats):
                runs.append(await drive(events, pattern, hook, seed=repeat))
                await conn.execute(sql.SQL("TRUNCATE {}").format(table))
        finally:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return runs


async def idle_runs(events: list[CloudEvent[Any]], pattern: str, repeats: int) -> list[Run]:
    async def hook(event: CloudEvent[Any]) -> tuple[int, int]:
        return 0, 0

    return [await drive(events, pattern, hook, seed=r) for r in range(repeats)]


def summary(runs: list[Run], field: str, q: float) -> float:
    """Median over the repeats of the q-quantile, in microseconds."""
    return median([percentile(getattr(run, field), q) for run in runs]) / 1000


def report(pattern: str, results: dict[str, list[Run]]) -> None:
    pub, base, idle = results["publisher"], results["baseline"], results["idle"]
    rows = [
        ("publish() loop time", summary(pub, "loop_ns", .5), summary(pub, "loop_ns", .99)),
        ("baseline loop CPU", summary(base, "loop_ns", .5), summary(base, "loop_ns", .99)),
        ("baseline hook wall", summary(base, "wall_ns", .5), summary(base, "wall_ns", .99)),
        ("ticker lateness, idle", summary(idle, "lateness_ns", .5),
         summary(idle, "lateness_ns", .99)),
        ("ticker lateness, publisher", summary(pub, "lateness_ns", .5),
         summary(pub, "lateness_ns", .99)),
        ("ticker lateness, baseline", summary(base, "lateness_ns", .5),
         summary(base, "lateness_ns", .99)),
    ]
    print(f"\npattern {pattern}                     p50 us     p99 us")
    for name, p50, p99 in rows:
        print(f"  {name:<30} {p50:9.2f}  {p99:9.2f}")
    for label, q in (("p50", .5), ("p99", .99)):
        ratio = summary(base, "loop_ns", q) / max(summary(pub, "loop_ns", q), 1e-3)
        wall = summary(base, "wall_ns", q) / max(summary(pub, "loop_ns", q), 1e-3)
        print(f"  ratio {label}: baseline loop CPU / publish = {ratio:7.1f}x "
              f"(hook wall / publish = {wall:7.1f}x; goal {GOAL_RATIO:.0f}x)")
    p99 = summary(pub, "loop_ns", .99)
    print(f"  publish() p99 {p99:.2f} us: goal <= {GOAL_P99_US} us "
          f"{'met' if p99 <= GOAL_P99_US else 'NOT met'}")


def main() -> None:
    args = run_arguments(__doc__.splitlines()[0])
    settings = load_settings()
    events = interleaved_events(args.sessions, args.events // args.sessions)
    print(f"{len(events)} events of {args.sessions} sessions, "
          f"{mean_size(events):.0f} bytes each; {args.repeats} repeats; "
          f"GIL switch interval {sys.getswitchinterval() * 1000:.1f} ms")
    with scratch_topic(settings.kafka_bootstrap) as topic:
        for pattern in ("voice", "burst"):
            results = {
                "idle": asyncio.run(idle_runs(events, pattern, args.repeats)),
                "publisher": asyncio.run(publisher_runs(
                    events, pattern, args.repeats, settings.kafka_bootstrap, topic)),
                "baseline": asyncio.run(baseline_runs(
                    events, pattern, args.repeats, settings.postgres_dsn)),
            }
            report(pattern, results)


if __name__ == "__main__":
    main()
