"""Cold and warm start of the local stack, on its own state folder and free ports.

    .venv/bin/python -m bench.stack_start [--repeats 5]

Cold: nothing on disk but the cached jars (initdb, KRaft format, topics, migrations).
Warm: stop, then start again with the data in place; median over the repeats.
Baseline, measured in the same run: the same warm restart with Kafka and PostgreSQL
started one after the other instead of together.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import time
import uuid
from collections.abc import Callable

from turnlog.infra.stack.config import StackSettings, load_settings
from turnlog.infra.stack.stack import Stack

GOAL_WARM_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    base = load_settings()
    state = base.state_dir / "bench" / f"stack-{uuid.uuid4().hex[:8]}"
    settings = StackSettings(
        state_dir=state, cache_dir=base.cache_dir, kafka_port=free_port(),
        kafka_controller_port=free_port(), postgres_port=free_port(),
        livekit_port=free_port(), livekit_udp_port=free_port(),
    )
    stack = Stack(settings)
    quiet = lambda line: None  # noqa: E731
    try:
        cold = stack.up(report=quiet)
        print(f"cold start: {cold.total:.2f} s  "
              + ", ".join(f"{k} {v:.2f} s" for k, v in cold.seconds.items()))
        parallel, sequential, ready = [], [], []
        for i in range(args.repeats):
            stack.down(report=quiet)
            report = stack.up(report=quiet)
            parallel.append(report.total)
            ready.append(report.seconds["services ready"])
            stack.down(report=quiet)
            sequential.append(
                timed(stack.kafka.start) + timed(stack.postgres.start)
            )
            print(f"  repeat {i + 1}: warm up {parallel[-1]:.2f} s "
                  f"(services ready {ready[-1]:.2f} s); sequential baseline {sequential[-1]:.2f} s")
        warm, serving = statistics.median(parallel), statistics.median(ready)
        seq = statistics.median(sequential)
        print(f"warm restart, median of {args.repeats}: {serving:.2f} s to Kafka + PostgreSQL "
              f"serving, {warm:.2f} s to provisioned (topics, migrations checked)")
        print(f"baseline, Kafka then PostgreSQL one after the other: {seq:.2f} s to serving")
        print(f"ratio serving/baseline: {serving / seq:.2f}; "
              f"provisioned/goal ({GOAL_WARM_SECONDS:.0f} s): {warm / GOAL_WARM_SECONDS:.2f}")
    finally:
        stack.down(report=quiet)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
