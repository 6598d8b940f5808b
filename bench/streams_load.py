"""Streams load generator: throughput and event-to-visible freshness of the projections,
the Faust worker against a plain aiokafka consumer loop, in the same run.

    .venv/bin/python -m bench.streams_load [--sessions 1000] [--backlog 100000]
        [--seconds 20] [--settings 1000x0.2 10000x0.2] [--repeats 1]

1. Throughput: a backlog of simulated sessions (`streams_mix`: interims several times a
   second while the user speaks, a turn every few seconds with its transcript, messages,
   STT/LLM/TTS/EOU metrics and usage, occasional tools and interruptions; ~580-byte
   events) is produced once to a scratch topic, then drained by each consumer and batch
   setting in turn, each into fresh sinks: events/s into both projections.
2. Freshness: for each consumer and setting, on a fresh topic, `--sessions` sessions run
   in real time (~3.4 events/s each); after `--warmup` s, `--seconds` s of events are
   measured from event time to visible in PostgreSQL and in ClickHouse (p50, p99).
Consumers (`streams_consumers`): `faust` is `python -m streams worker`, `baseline` the
same processor and sinks in an aiokafka loop (`streams_baseline`); both are processes of
their own, configured by environment only. How visibility is measured: `streams_measure`.
Everything made (topics, schemas, chDB folders) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from bench.streams_consumers import BatchSetting, ConsumerRun, wait_for
from bench.streams_measure import (
    freshness,
    new_producer,
    percentile,
    produce_backlog,
    produce_live,
    sustained_rate,
)
from bench.streams_mix import Session
from infra.stack.config import load_settings
from infra.stack.topics import ensure_topics
from schemas import encode, topic_specs

GOAL_EVENTS_PER_SECOND = 20_000
GOAL_P99 = {"postgres": 0.5, "clickhouse": 2.0}
"""p99 event-to-visible seconds at 1,000 concurrent sessions."""
CONSUMERS = ("faust", "baseline")
"""Measured by default; `greedy` (the baseline, batching what has been fetched) on demand."""


@dataclass(frozen=True)
class Throughput:
    kind: str
    setting: BatchSetting
    both: float | None
    postgres: float | None
    clickhouse: float | None


@dataclass(frozen=True)
class Freshness:
    kind: str
    setting: BatchSetting
    produced_per_second: float
    events: int
    postgres: tuple[float, float]
    """p50, p99 seconds."""
    clickhouse: tuple[float, float]
    drain: float
    """Seconds from the last event sent to every event visible in both sinks: about one
    batch cycle when the consumer keeps up, more when it fell behind."""


@dataclass(frozen=True)
class Bench:
    args: argparse.Namespace
    bootstrap: str
    dsn: str
    scratch: Path
    runs: list[ConsumerRun] = field(default_factory=list)

    def run(self, kind: str, setting: BatchSetting, prefix: str) -> ConsumerRun:
        name = f"{kind[:1]}{uuid.uuid4().hex[:8]}"
        run = ConsumerRun(kind, setting, prefix, name, self.scratch, self.bootstrap, self.dsn)
        self.runs.append(run)
        return run

    def clean_up(self) -> None:
        """Stop every consumer still running and drop every schema (after a failure too)."""
        for run in self.runs:
            run.stop()
            run.drop()
        shutil.rmtree(self.scratch, ignore_errors=True)


@contextlib.contextmanager
def scratch_topics(bootstrap: str) -> Iterator[str]:
    """The four topics under a fresh prefix, deleted afterwards; yields the prefix."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    specs = topic_specs(prefix)
    asyncio.run(ensure_topics(bootstrap, specs))
    try:
        yield prefix
    finally:
        asyncio.run(_delete_topics(bootstrap, [s.name for s in specs]))


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def measure_throughput(run: ConsumerRun, total: int) -> Throughput:
    run.start()
    postgres, clickhouse = run.pollers()
    postgres.start()
    clickhouse.start()
    try:
        wait_for(lambda: postgres.visible() >= total and clickhouse.visible() >= total,
                 timeout=max(120.0, total / 1000), run=run,
                 what=f"{total} events visible in both sinks")  # fmt: skip
    finally:
        run.stop()
        postgres.stop()
        clickhouse.stop()
        run.drop()
    samples = (postgres.samples, clickhouse.samples)
    return Throughput(
        run.kind,
        run.setting,
        sustained_rate(samples, total),
        sustained_rate(samples[:1], total),
        sustained_rate(samples[1:], total),
    )


async def produce_probe(bootstrap: str, topic: str) -> None:
    """One event, to learn when the consumer has joined and writes."""
    session = Session(f"bench-probe-{uuid.uuid4().hex[:8]}", random.Random(0))
    event = session.event(session.opening(datetime.now(UTC))[0][1], datetime.now(UTC))
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, encode(event), key=session.id.encode())
    finally:
        await producer.stop()


def measure_freshness(bench: Bench, kind: str, setting: BatchSetting, seed: int) -> Freshness:
    args = bench.args
    with scratch_topics(bench.bootstrap) as prefix:
        run = bench.run(kind, setting, prefix)
        run.start()
        postgres, clickhouse = run.pollers()
        postgres.start()
        clickhouse.start()
        try:
            asyncio.run(produce_probe(bench.bootstrap, run.topic))
            wait_for(lambda: postgres.visible() >= 1 and clickhouse.visible() >= 1,
                     timeout=120, run=run, what="the probe event visible")  # fmt: skip
            began = time.time()
            log = asyncio.run(produce_live(
                bench.bootstrap, run.topic, sessions=args.sessions,
                seconds=args.warmup + args.seconds, seed=seed, run=run.name))  # fmt: skip
            sent = time.time()
            wait_for(lambda: min(postgres.visible(), clickhouse.visible()) >= log.count + 1,
                     timeout=300, run=run, what="every event visible")  # fmt: skip
            drain = time.time() - sent
        finally:
            run.stop()
            postgres.stop()
            clickhouse.stop()
            run.drop()
    window = {"since": began + args.warmup, "until": began + args.warmup + args.seconds}
    ages = [freshness(p.samples, log, **window) for p in (postgres, clickhouse)]
    quantiles = [(percentile(a, 0.5), percentile(a, 0.99)) for a in ages]
    return Freshness(kind, setting, log.count / (args.warmup + args.seconds), len(ages[0]),
                     quantiles[0], quantiles[1], drain)  # fmt: skip


def run_phases(bench: Bench) -> tuple[list[Throughput], list[Freshness]]:
    args = bench.args
    settings = [BatchSetting.parse(s) for s in args.settings]
    throughputs: list[Throughput] = []
    fresh: list[Freshness] = []
    with scratch_topics(bench.bootstrap) as prefix:
        turns = max(1, round((args.backlog / args.sessions - 7) / 22))
        total = asyncio.run(produce_backlog(bench.bootstrap, prefix + "turnlog.events",
                                            sessions=args.sessions, turns=turns,
                                            seed=args.seed, run="backlog"))  # fmt: skip
        print(f"backlog: {total:,} events of {args.sessions:,} sessions ({turns} turns each)",
              flush=True)  # fmt: skip
        for repeat in range(args.repeats):
            for setting in settings:
                for kind in _order(args.consumers, repeat):
                    drained = measure_throughput(bench.run(kind, setting, prefix), total)
                    print(f"  throughput {kind:<8} {setting}: {_rate(drained.both)}", flush=True)
                    throughputs.append(drained)
    for repeat in range(args.repeats):
        for setting in settings:
            for kind in _order(args.consumers, repeat):
                measured = measure_freshness(bench, kind, setting, args.seed + repeat)
                print(f"  freshness  {kind:<8} {setting}: PG p99 {measured.postgres[1]:.3f}s, "
                      f"CH p99 {measured.clickhouse[1]:.3f}s, drained {measured.drain:.1f}s "
                      "after the last event", flush=True)  # fmt: skip
                fresh.append(measured)
    return throughputs, fresh


def _order(consumers: Sequence[str], repeat: int) -> list[str]:
    """Alternate which consumer goes first, so neither always runs on a warmer machine."""
    return list(consumers) if repeat % 2 == 0 else list(reversed(consumers))


def _rate(value: float | None) -> str:
    return f"{value:>9,.0f}" if value is not None else "      n/a"


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def report(throughputs: list[Throughput], fresh: list[Freshness], args: argparse.Namespace) -> None:
    settings = [BatchSetting.parse(s) for s in args.settings]
    print(f"\nthroughput: backlog drained into both projections, events/s (median of "
          f"{args.repeats}; goal {GOAL_EVENTS_PER_SECOND:,})")  # fmt: skip
    print(f"{'batch':<14}{'consumer':<10}{'both':>10}{'PostgreSQL':>12}{'ClickHouse':>12}")
    for setting in settings:
        rates: dict[str, float | None] = {}
        for kind in args.consumers:
            drains = [r for r in throughputs if r.kind == kind and r.setting == setting]
            rates[kind] = _median([r.both for r in drains])
            print(f"{setting!s:<14}{kind:<10}{_rate(rates[kind]):>10}"
                  f"{_rate(_median([r.postgres for r in drains])):>12}"
                  f"{_rate(_median([r.clickhouse for r in drains])):>12}")  # fmt: skip
        faust, baseline = rates.get("faust"), rates.get("baseline")
        if faust and baseline:
            print(f"{'':<14}{'ratio':<10}{faust / baseline:>10.2f}  (faust / baseline)")
    print(f"\nfreshness: {args.sessions:,} concurrent sessions, {args.seconds:g}s measured "
          f"after {args.warmup:g}s warm-up; event time to visible, seconds (median of "
          f"{args.repeats}; goal p99 <= {GOAL_P99['postgres']} PG, <= "
          f"{GOAL_P99['clickhouse']} CH)")  # fmt: skip
    print(f"{'batch':<14}{'consumer':<10}{'events/s':>9}{'PG p50':>8}{'PG p99':>8}"
          f"{'CH p50':>8}{'CH p99':>8}{'drain':>7}  goals")  # fmt: skip
    for setting in settings:
        for kind in args.consumers:
            runs = [r for r in fresh if r.kind == kind and r.setting == setting]
            if runs:
                print(_freshness_row(setting, kind, runs))


def _freshness_row(setting: BatchSetting, kind: str, runs: list[Freshness]) -> str:
    rate = statistics.median(r.produced_per_second for r in runs)
    pg50, pg99, ch50, ch99, drain = (
        statistics.median(values)
        for values in zip(*((*r.postgres, *r.clickhouse, r.drain) for r in runs), strict=True)
    )
    met = pg99 <= GOAL_P99["postgres"] and ch99 <= GOAL_P99["clickhouse"]
    return (f"{setting!s:<14}{kind:<10}{rate:>9,.0f}{pg50:>8.3f}{pg99:>8.3f}"
            f"{ch50:>8.3f}{ch99:>8.3f}{drain:>6.1f}s  {'met' if met else 'MISSED'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["1000x0.2", "10000x0.2"],
        help="batch settings, SIZExWITHIN (events x seconds)",
    )
    parser.add_argument("--consumers", nargs="+", default=list(CONSUMERS),
                        choices=(*CONSUMERS, "greedy"))  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    stack = load_settings()
    scratch = stack.state_dir / "bench" / f"streams-load-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    print(
        f"streams load: {os.cpu_count()} cores, Kafka {stack.kafka_bootstrap}; consumers "
        f"{', '.join(args.consumers)}; batch settings {', '.join(args.settings)}",
        flush=True,
    )
    bench = Bench(args, stack.kafka_bootstrap, stack.postgres_dsn, scratch)
    try:
        throughputs, fresh = run_phases(bench)
    finally:
        bench.clean_up()
    report(throughputs, fresh, args)


if __name__ == "__main__":
    main()
