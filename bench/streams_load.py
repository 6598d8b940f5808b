"""Streams load generator: throughput and event-to-visible freshness of the projections,
for the worker (batch engine), its Faust engine and a plain aiokafka consumer loop, in
the same run, with ratios against the loop.

    .venv/bin/python -m bench.streams_load [--sessions 1000] [--backlog 100000]
        [--seconds 20] [--settings 10000x0.2] [--repeats 3]
        [--consumers worker faust baseline] [--load-sessions 2000 3000]

1. Throughput (the most each sustains): a backlog of simulated sessions (`streams_mix`:
   interims several times a second while the user speaks, a turn every few seconds with
   its transcript, messages, STT/LLM/TTS/EOU metrics and usage, occasional tools and
   interruptions; ~580-byte events) is produced once to a scratch topic, then drained by
   each consumer and batch setting in turn, each into fresh sinks: events/s into both
   projections. `--backlog 0` skips it.
2. Freshness: for each consumer and setting, on a fresh topic, `--sessions` sessions run
   in real time (~3.4 events/s each); after `--warmup` s, `--seconds` s of events are
   measured from event time to visible in PostgreSQL and in ClickHouse (p50, p99).
3. Load (with `--load-sessions`): the same live run at more sessions, to see up to which
   live rate a consumer keeps up (drain: seconds from the last event sent until all are
   visible; about one batch cycle while it keeps up).
Every phase is repeated `--repeats` times, the order of the consumers alternating;
tables show medians. Consumers (`streams_consumers`): `worker` is `python -m turnlog.streams
worker`, `faust` the same on `TURNLOG_STREAMS_ENGINE=faust`, `baseline` the same
processor and sinks in a plain aiokafka loop batching greedily (`streams_baseline`),
`take` that loop batching as `take_events`; each is a process of its own, configured by
environment only. How visibility is measured: `streams_measure`. Everything made
(topics, schemas, chDB folders) is removed at the end.
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
from turnlog.infra.stack.config import load_settings
from turnlog.infra.stack.topics import ensure_topics
from turnlog.schemas import encode, topic_specs

GOAL_EVENTS_PER_SECOND = 20_000
GOAL_P99 = {"postgres": 0.5, "clickhouse": 2.0}
"""p99 event-to-visible seconds at 1,000 concurrent sessions."""
CONSUMERS = ("worker", "faust", "baseline")
"""Measured by default; `take` (the baseline loop batching as `take_events`) on demand."""
BASELINE = "baseline"


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
    sessions: int
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


def measure_freshness(
    bench: Bench, kind: str, setting: BatchSetting, *, sessions: int, seed: int
) -> Freshness:
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
                bench.bootstrap, run.topic, sessions=sessions,
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
    return Freshness(kind, setting, sessions, log.count / (args.warmup + args.seconds),
                     len(ages[0]), quantiles[0], quantiles[1], drain)  # fmt: skip


def run_phases(bench: Bench) -> tuple[list[Throughput], list[Freshness]]:
    args = bench.args
    settings = [BatchSetting.parse(s) for s in args.settings]
    throughputs: list[Throughput] = []
    fresh: list[Freshness] = []
    if args.backlog > 0:
        throughputs = drain_backlog(bench, settings)
    loads = [(args.sessions, list(args.consumers)),
             *((n, list(args.load_consumers)) for n in args.load_sessions)]  # fmt: skip
    for sessions, consumers in loads:
        for repeat in range(args.repeats):
            for setting in settings:
                for kind in _order(consumers, repeat):
                    measured = measure_freshness(bench, kind, setting, sessions=sessions,
                                                 seed=args.seed + repeat)  # fmt: skip
                    print(f"  freshness  {kind:<8} {setting} x{sessions}: "
                          f"{measured.produced_per_second:,.0f} ev/s, PG p99 "
                          f"{measured.postgres[1]:.3f}s, CH p99 {measured.clickhouse[1]:.3f}s, "
                          f"drained {measured.drain:.1f}s after the last event", flush=True)
                    fresh.append(measured)
    return throughputs, fresh


def drain_backlog(bench: Bench, settings: list[BatchSetting]) -> list[Throughput]:
    args = bench.args
    throughputs: list[Throughput] = []
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
    return throughputs


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
    if throughputs:
        print(f"\nthroughput: backlog drained into both projections, events/s (median of "
              f"{args.repeats}; goal {GOAL_EVENTS_PER_SECOND:,}; ratio: both / {BASELINE}'s)")
        print(f"{'batch':<14}{'consumer':<10}{'both':>10}{'PostgreSQL':>12}{'ClickHouse':>12}"
              f"{'ratio':>8}")  # fmt: skip
    for setting in settings:
        rows: dict[str, list[float | None]] = {}
        for kind in args.consumers:
            drains = [r for r in throughputs if r.kind == kind and r.setting == setting]
            if drains:
                rows[kind] = [_median([getattr(r, sink) for r in drains])
                              for sink in ("both", "postgres", "clickhouse")]  # fmt: skip
        base = rows.get(BASELINE, [None])[0]
        for kind, (both, pg, ch) in rows.items():
            ratio = f"{both / base:>8.2f}" if both and base else f"{'':>8}"
            print(f"{setting!s:<14}{kind:<10}{_rate(both):>10}{_rate(pg):>12}{_rate(ch):>12}"
                  f"{ratio}")  # fmt: skip
    sessions = sorted({r.sessions for r in fresh})
    print(f"\nfreshness: concurrent sessions live, {args.seconds:g}s measured after "
          f"{args.warmup:g}s warm-up; event time to visible, seconds (median of "
          f"{args.repeats}; goal at 1,000 sessions: p99 <= {GOAL_P99['postgres']} PG, <= "
          f"{GOAL_P99['clickhouse']} CH; ratio: p99 / {BASELINE}'s p99, PG and CH)")
    print(f"{'batch':<14}{'sessions':>8} {'consumer':<10}{'events/s':>9}{'PG p50':>8}"
          f"{'PG p99':>8}{'CH p50':>8}{'CH p99':>8}{'drain':>7}  ratio PG/CH  goals")
    for setting in settings:
        for count in sessions:
            medians: dict[str, tuple[float, ...]] = {}
            for kind in (*args.consumers, *args.load_consumers):
                runs = [r for r in fresh
                        if r.kind == kind and r.setting == setting and r.sessions == count]
                if runs and kind not in medians:
                    medians[kind] = _freshness_medians(runs)
            for kind, values in medians.items():
                print(_freshness_row(setting, count, kind, values, medians.get(BASELINE)))


def _freshness_medians(runs: list[Freshness]) -> tuple[float, ...]:
    """events/s, PG p50, PG p99, CH p50, CH p99, drain: medians over `runs`."""
    return tuple(
        statistics.median(values)
        for values in zip(*((r.produced_per_second, *r.postgres, *r.clickhouse, r.drain)
                            for r in runs), strict=True)
    )  # fmt: skip


def _freshness_row(setting: BatchSetting, sessions: int, kind: str,
                   values: tuple[float, ...], base: tuple[float, ...] | None) -> str:  # fmt: skip
    rate, pg50, pg99, ch50, ch99, drain = values
    ratio = f"{pg99 / base[2]:>5.2f}/{ch99 / base[4]:<5.2f}" if base else f"{'':>11}"
    met = pg99 <= GOAL_P99["postgres"] and ch99 <= GOAL_P99["clickhouse"]
    return (f"{setting!s:<14}{sessions:>8} {kind:<10}{rate:>9,.0f}{pg50:>8.3f}{pg99:>8.3f}"
            f"{ch50:>8.3f}{ch99:>8.3f}{drain:>6.1f}s  {ratio}  {'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["10000x0.2"],
        help="batch settings, SIZExWITHIN (events x seconds)",
    )
    parser.add_argument("--consumers", nargs="+", default=list(CONSUMERS),
                        choices=(*CONSUMERS, "take"))  # fmt: skip
    parser.add_argument("--load-sessions", nargs="*", type=int, default=[],
                        help="more live runs at these session counts (phase 3)")
    parser.add_argument("--load-consumers", nargs="+", default=["worker", BASELINE],
                        choices=(*CONSUMERS, "take"))  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
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
