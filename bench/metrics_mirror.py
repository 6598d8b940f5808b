"""What getting the publisher's produce latency to the worker's endpoint costs a job
process: the mirror against observing straight into the multiprocess histogram.

    .venv/bin/python -m bench.metrics_mirror [--repeats 7] [--per-sync 50 500 5000]

Both modes run in prometheus-client's multiprocess mode (a scratch directory), as a job
process of the agent worker does, and record the same seeded latencies:
- `direct` (the alternative): the sender thread calls `Histogram.observe()` of a
  multiprocess histogram per acknowledged event (a lock and two mmap writes each);
- `mirror` (what the gateway does): the sender thread counts the latency in the
  publisher's own buckets (`PublisherMetrics.observe_latency`, one bisect), and every
  `MIRROR_INTERVAL` the job's loop runs `RegistryMirror.sync()`, which copies every
  publisher series (counters of the 12 event types a call has, gauges) and adds each bucket's new
  count to the served histogram (`internals.add_to_histogram`).
`--per-sync` is the number of acknowledged events between two syncs (5 s apart in the
gateway: 10, 100 and 1,000 events a second). Reported: CPU per event (`process_time`,
median over repeats) of each mode with the ratio, and the time one sync holds the loop
(median). Not included: Kafka, the scrape (the worker process merges the files).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram

from turnlog.agent_gateway.worker import prepare_multiprocess_dir


def latencies(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(-5.3, 0.8) for _ in range(count)]  # about 5 ms, a long tail


def run_direct(values: list[float], histogram: Histogram) -> float:
    started = time.process_time()
    for value in values:
        histogram.observe(value)
    return time.process_time() - started


def run_mirror(values: list[float], per_sync: int) -> tuple[float, list[float]]:
    from turnlog.agent_gateway.metrics import RegistryMirror
    from turnlog.agent_gateway.publisher.metrics import PublisherMetrics, collector_for

    private = CollectorRegistry()
    collector = collector_for(private)
    metrics = PublisherMetrics(queue_depth=lambda: 0, spool_bytes=lambda: 0)
    for kind in ("enqueued", "sent"):  # a call's mix: 12 event types
        getattr(metrics, kind).update({f"turnlog.type{i}.v1": 1 for i in range(12)})
    collector.attach(metrics)
    mirror = RegistryMirror(private)
    syncs: list[float] = []
    started = time.process_time()
    for start in range(0, len(values), per_sync):
        for value in values[start : start + per_sync]:
            metrics.observe_latency(value)
        began = time.perf_counter()
        mirror.sync()
        syncs.append(time.perf_counter() - began)
    return time.process_time() - started, syncs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--per-sync", type=int, nargs="+", default=[50, 500, 5000])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()
    print(f"seed {args.seed}, {args.events} events a run, {args.repeats} repeats")
    prepare_multiprocess_dir(Path(tempfile.mkdtemp(prefix="turnlog-bench-metrics-")))
    from turnlog.agent_gateway.publisher.metrics import LATENCY_BUCKETS

    direct = Histogram("bench_direct_seconds", "direct observe", buckets=LATENCY_BUCKETS)
    values = latencies(args.events, args.seed)
    print(f"{'events/sync':>11} {'direct µs/ev':>12} {'mirror µs/ev':>12} {'ratio':>6} "
          f"{'sync holds loop':>16}")  # fmt: skip
    for per_sync in args.per_sync:
        direct_cpu, mirror_cpu, holds = [], [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            direct_cpu.append(run_direct(values, direct) / len(values))
            cpu, syncs = run_mirror(values, per_sync)
            mirror_cpu.append(cpu / len(values))
            holds.append(statistics.median(syncs))
        d, m = statistics.median(direct_cpu), statistics.median(mirror_cpu)
        hold = statistics.median(holds)
        print(f"{per_sync:>11} {d * 1e6:>12.2f} {m * 1e6:>12.2f} {m / d:>6.2f} "
              f"{hold * 1e3:>13.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
