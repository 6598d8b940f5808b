"""Streams load generator: throughput and event-to-visible freshness of the projections,
for the v2 worker (one process per projection) and two baselines in the same run: v1 (the
worker as it was, from a git worktree of its commit) and a hand-tuned minimal projector;
markdown tables of medians with ratios against each baseline.

    .venv/bin/python -m bench.streams_load [--sessions 1000] [--backlog 100000]
        [--seconds 20] [--warmup 5] [--settings 10000x0.2] [--repeats 3]
        [--consumers v2 v1 minimal] [--projections postgres clickhouse derived]
        [--load-sessions 2000 3000] [--v1-worktree /tmp/turnlog-v1]

1. Throughput (the most each sustains): a backlog of simulated sessions (`streams_mix`:
   interims several times a second while the user speaks, a turn every few seconds with
   its transcript, messages, STT/LLM/TTS/EOU metrics and usage, occasional tools and
   interruptions; ~580-byte events) is produced once to a scratch topic, then drained by
   each consumer in turn, each into fresh sinks: events/s into both PostgreSQL and
   ClickHouse (from both at 10% until both show the whole backlog; start-up, until every
   sink shows an event, apart), into each alone (10% to 90%), and for v2 into the
   derived projection (its group's offsets, committed in its transactions). `--backlog 0` skips it.
2. Freshness: for each consumer, on a fresh topic, `--sessions` sessions run in real time
   (~3.4 events/s each); after `--warmup` s, `--seconds` s of events are measured from
   event time to visible in PostgreSQL and in ClickHouse (p50, p99).
3. Load (with `--load-sessions`): the same live run at more sessions, to see up to which
   live rate a consumer keeps up (drain: seconds from the last event sent until all are
   visible; about one batch cycle while it keeps up).
Every phase is repeated `--repeats` times, the order of the consumers alternating;
tables show medians. Consumers and what is polled: `streams_consumers`; how visibility
is measured: `streams_measure`. Everything made (topics, schemas, chDB folders) is
removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
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
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient

from bench.streams_consumers import (
    KINDS,
    V1_WORKTREE,
    V2_PROJECTIONS,
    BatchSetting,
    ConsumerRun,
    ensure_worktree,
    wait_for,
)
from bench.streams_measure import (
    Poller,
    all_in_rate,
    first_seen,
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

GOAL_EVENTS_PER_SECOND: Final = 20_000
GOAL_P99: Final = {"postgres": 0.5, "clickhouse": 1.0}
"""p99 event-to-visible seconds at 1,000 concurrent sessions."""
BASELINES: Final = ("v1", "minimal")
BOTH: Final = ("postgres", "clickhouse")


@dataclass(frozen=True)
class Throughput:
    kind: str
    setting: BatchSetting
    rates: dict[str, float | None]
    """events/s: `both` (PostgreSQL and ClickHouse), and per polled sink."""
    startup: float | None = None
    """Seconds from launching the consumer until every polled sink showed an event."""


@dataclass(frozen=True)
class Freshness:
    kind: str
    setting: BatchSetting
    sessions: int
    produced_per_second: float
    events: int
    quantiles: dict[str, tuple[float, float]]
    """Per sink (postgres, clickhouse): p50, p99 seconds."""
    drain: float
    """Seconds from the last event sent to every event visible in both sinks: about one
    batch cycle when the consumer keeps up, more when it fell behind."""


@dataclass
class Bench:
    args: argparse.Namespace
    bootstrap: str
    dsn: str
    scratch: Path
    runs: list[ConsumerRun] = field(default_factory=list)

    def run(self, kind: str, setting: BatchSetting, prefix: str) -> ConsumerRun:
        name = f"{kind[:2]}{uuid.uuid4().hex[:8]}"
        run = ConsumerRun(kind, setting, prefix, name, self.scratch, self.bootstrap, self.dsn,
                          projections=tuple(self.args.projections),
                          worktree=self.args.v1_worktree)  # fmt: skip
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
    """The topics under a fresh prefix, deleted afterwards; yields the prefix."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    specs = topic_specs(prefix)
    asyncio.run(ensure_topics(bootstrap, specs))
    try:
        yield prefix
    finally:
        asyncio.run(delete_topics(bootstrap, [s.name for s in specs]))


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


@contextlib.contextmanager
def polling(run: ConsumerRun) -> Iterator[dict[str, Poller]]:
    """The consumer started with its pollers; everything stopped and dropped afterwards."""
    run.start()
    pollers = run.pollers()
    for poller in pollers.values():
        poller.start()
    try:
        yield pollers
    finally:
        run.stop()
        for poller in pollers.values():
            poller.stop()
            close = getattr(poller.read, "close", None)
            if close is not None:
                close()
        run.drop()


def visible_in(pollers: dict[str, Poller], sinks: Sequence[str]) -> int:
    """Events visible in every one of `sinks` that is polled."""
    return min((pollers[s].visible() for s in sinks if s in pollers), default=0)


def measure_throughput(run: ConsumerRun, total: int) -> Throughput:
    launched = time.time()
    with polling(run) as pollers:
        wait_for(lambda: visible_in(pollers, list(pollers)) >= total,
                 timeout=max(180.0, total / 500), run=run,
                 what=f"{total} events visible in {', '.join(pollers)}")  # fmt: skip
    rates: dict[str, float | None] = {
        sink: sustained_rate([p.samples], total) for sink, p in pollers.items()
    }
    both = [pollers[s].samples for s in BOTH if s in pollers]
    rates["both"] = all_in_rate(both, total) if len(both) == len(BOTH) else None
    every = [p.samples for p in pollers.values()]
    return Throughput(run.kind, run.setting, rates, first_seen(every, launched))


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
        with polling(run) as pollers:
            asyncio.run(produce_probe(bench.bootstrap, run.topic))
            wait_for(lambda: visible_in(pollers, BOTH) >= 1, timeout=180, run=run,
                     what="the probe event visible")  # fmt: skip
            began = time.time()
            log = asyncio.run(produce_live(
                bench.bootstrap, run.topic, sessions=sessions,
                seconds=args.warmup + args.seconds, seed=seed, run=run.name))  # fmt: skip
            sent = time.time()
            wait_for(lambda: visible_in(pollers, BOTH) >= log.count + 1,
                     timeout=300, run=run, what="every event visible")  # fmt: skip
            drain = time.time() - sent
    window = {"since": began + args.warmup, "until": began + args.warmup + args.seconds}
    quantiles: dict[str, tuple[float, float]] = {}
    events = 0
    for sink in BOTH:
        if sink in pollers:
            ages = freshness(pollers[sink].samples, log, **window)
            quantiles[sink] = (percentile(ages, 0.5), percentile(ages, 0.99))
            events = len(ages)
    return Freshness(kind, setting, sessions, log.count / (args.warmup + args.seconds),
                     events, quantiles, drain)  # fmt: skip


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
                for kind in alternate(consumers, repeat):
                    measured = measure_freshness(bench, kind, setting, sessions=sessions,
                                                 seed=args.seed + repeat)  # fmt: skip
                    pg, ch = (measured.quantiles.get(s, (math.nan,) * 2)[1] for s in BOTH)
                    print(f"  freshness  {kind:<8} {setting} x{sessions}: "
                          f"{measured.produced_per_second:,.0f} ev/s, PG p99 {pg:.3f}s, "
                          f"CH p99 {ch:.3f}s, drained {measured.drain:.1f}s after the last "
                          "event", flush=True)  # fmt: skip
                    fresh.append(measured)
    return throughputs, fresh


def drain_backlog(bench: Bench, settings: list[BatchSetting]) -> list[Throughput]:
    args = bench.args
    throughputs: list[Throughput] = []
    with scratch_topics(bench.bootstrap) as prefix:
        turns = backlog_turns(args.backlog, args.sessions)
        total = asyncio.run(produce_backlog(bench.bootstrap, prefix + "turnlog.events",
                                            sessions=args.sessions, turns=turns,
                                            seed=args.seed, run="backlog"))  # fmt: skip
        print(f"backlog: {total:,} events of {args.sessions:,} sessions ({turns} turns each)",
              flush=True)  # fmt: skip
        for repeat in range(args.repeats):
            for setting in settings:
                for kind in alternate(args.consumers, repeat):
                    drained = measure_throughput(bench.run(kind, setting, prefix), total)
                    shown = ", ".join(f"{k} {rate_text(v).strip()}"
                                      for k, v in drained.rates.items())  # fmt: skip
                    print(f"  throughput {kind:<8} {setting}: {shown}", flush=True)
                    throughputs.append(drained)
    return throughputs


def backlog_turns(backlog: int, sessions: int) -> int:
    """Turns per session so `sessions` whole sessions make about `backlog` events (a
    session is ~7 events of opening and closing plus ~22 a turn)."""
    return max(1, round((backlog / sessions - 7) / 22))


def alternate(consumers: Sequence[str], repeat: int) -> list[str]:
    """Rotate which consumer goes first, so none always runs on a warmer machine."""
    shift = repeat % len(consumers) if consumers else 0
    return [*consumers[shift:], *consumers[:shift]]


def rate_text(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None and not math.isnan(value) else "n/a"


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(known) if known else None


def ratio_text(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value and base else "-"


def throughput_table(throughputs: Sequence[Throughput], consumers: Sequence[str],
                     setting: BatchSetting) -> list[str]:  # fmt: skip
    """Markdown rows: median events/s per consumer, and ratios of `both` to each baseline."""
    medians: dict[str, dict[str, float | None]] = {}
    for kind in consumers:
        runs = [t for t in throughputs if t.kind == kind and t.setting == setting]
        if runs:
            medians[kind] = {sink: median([t.rates.get(sink) for t in runs])
                             for sink in ("both", *V2_PROJECTIONS)}  # fmt: skip
            medians[kind]["startup"] = median([t.startup for t in runs])
    bases = [b for b in BASELINES if b in medians]
    lines = ["| consumer | both (PG and CH) | PostgreSQL | ClickHouse | derived | start-up | "
             + " | ".join(f"x {b}" for b in bases) + " |",
             "|---|---:|---:|---:|---:|---:|" + "---:|" * len(bases)]  # fmt: skip
    for kind, rates in medians.items():
        ratios = [ratio_text(rates["both"], medians[b]["both"]) for b in bases]
        startup = rates["startup"]
        lines.append(f"| {kind} | " + " | ".join(rate_text(rates[s]) for s in
                     ("both", *V2_PROJECTIONS)) + " | "
                     + (f"{startup:.1f} s" if startup is not None else "n/a") + " | "
                     + " | ".join(ratios) + " |")  # fmt: skip
    return lines


def freshness_table(fresh: Sequence[Freshness], consumers: Sequence[str],
                    setting: BatchSetting, sessions: int) -> list[str]:  # fmt: skip
    """Markdown rows: median p50/p99 per consumer, p99 ratios (PG/CH) to each baseline."""
    medians: dict[str, dict[str, float]] = {}
    for kind in consumers:
        runs = [
            r for r in fresh if r.kind == kind and r.setting == setting and r.sessions == sessions
        ]
        if runs:
            medians[kind] = freshness_medians(runs)
    bases = [b for b in BASELINES if b in medians]
    lines = ["| consumer | events/s | PG p50 | PG p99 | CH p50 | CH p99 | drain | "
             + "".join(f"p99 PG/CH ÷ {b} | " for b in bases) + "goals |",
             "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(bases) + "---|"]  # fmt: skip
    for kind, m in medians.items():
        ratios = [f"{ratio_text(m['pg99'], medians[b]['pg99'])} / "
                  f"{ratio_text(m['ch99'], medians[b]['ch99'])}" for b in bases]  # fmt: skip
        met = m["pg99"] <= GOAL_P99["postgres"] and m["ch99"] <= GOAL_P99["clickhouse"]
        lines.append(
            f"| {kind} | {m['rate']:,.0f} | {m['pg50']:.3f} | {m['pg99']:.3f} | "
            f"{m['ch50']:.3f} | {m['ch99']:.3f} | {m['drain']:.1f} s | "
            + "".join(f"{r} | " for r in ratios)
            + ("met" if met else "MISSED")
            + " |"
        )
    return lines


def freshness_medians(runs: Sequence[Freshness]) -> dict[str, float]:
    """events/s, p50 and p99 of each sink, drain: medians over `runs` (nan if unpolled)."""
    nan = (math.nan, math.nan)

    def med(values: list[float]) -> float:
        value = median(list(values))
        return math.nan if value is None else value

    return {
        "rate": med([r.produced_per_second for r in runs]),
        "pg50": med([r.quantiles.get("postgres", nan)[0] for r in runs]),
        "pg99": med([r.quantiles.get("postgres", nan)[1] for r in runs]),
        "ch50": med([r.quantiles.get("clickhouse", nan)[0] for r in runs]),
        "ch99": med([r.quantiles.get("clickhouse", nan)[1] for r in runs]),
        "drain": med([r.drain for r in runs]),
    }


def report(throughputs: list[Throughput], fresh: list[Freshness], args: argparse.Namespace) -> None:
    settings = [BatchSetting.parse(s) for s in args.settings]
    v2 = f"v2 = {len(args.projections)} processes ({', '.join(args.projections)})"
    for setting in settings:
        if throughputs:
            print(f"\n**Throughput**, backlog drained, events/s, batch {setting}, median of "
                  f"{args.repeats} ({v2}; goal {GOAL_EVENTS_PER_SECOND:,} into both; ratios: "
                  "both ÷ the baseline's both)\n")  # fmt: skip
            print("\n".join(throughput_table(throughputs, args.consumers, setting)))
        for sessions in sorted({r.sessions for r in fresh}):
            consumers = list(dict.fromkeys([*args.consumers, *args.load_consumers]))
            print(f"\n**Freshness** at {sessions:,} live sessions, batch {setting}: event time "
                  f"to visible, seconds, {args.seconds:g} s measured after {args.warmup:g} s "
                  f"warm-up, median of {args.repeats} (goals at 1,000 sessions: p99 ≤ "
                  f"{GOAL_P99['postgres']} s PG, ≤ {GOAL_P99['clickhouse']} s CH)\n")  # fmt: skip
            print("\n".join(freshness_table(fresh, consumers, setting, sessions)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--settings", nargs="+", default=["10000x0.2"],
                        help="batch settings, SIZExWITHIN (events x seconds)")  # fmt: skip
    parser.add_argument("--consumers", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument(
        "--projections",
        nargs="+",
        default=list(V2_PROJECTIONS),
        choices=V2_PROJECTIONS,
        help="v2's processes, one per projection",
    )
    parser.add_argument(
        "--load-sessions",
        nargs="*",
        type=int,
        default=[],
        help="more live runs at these session counts (phase 3)",
    )
    parser.add_argument("--load-consumers", nargs="+", default=["v2", "minimal"], choices=KINDS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--v1-worktree", type=Path, default=V1_WORKTREE)
    args = parser.parse_args()
    if "v1" in (*args.consumers, *args.load_consumers):
        ensure_worktree(args.v1_worktree)
    stack = load_settings()
    scratch = stack.state_dir / "bench" / f"streams-load-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    print(f"streams load: {os.cpu_count()} cores, Kafka {stack.kafka_bootstrap}; consumers "
          f"{', '.join(args.consumers)}; v2 projections {', '.join(args.projections)}; batch "
          f"settings {', '.join(args.settings)}; seed {args.seed}", flush=True)  # fmt: skip
    bench = Bench(args, stack.kafka_bootstrap, stack.postgres_dsn, scratch)
    try:
        throughputs, fresh = run_phases(bench)
    finally:
        bench.clean_up()
    report(throughputs, fresh, args)


if __name__ == "__main__":
    main()
