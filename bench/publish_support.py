"""Shared pieces of the publisher benchmarks: a scratch topic, a scratch folder,
realistic events, percentiles."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from turnlog.agent_gateway.publisher.testing import session_events
from turnlog.infra.stack.config import load_settings
from turnlog.infra.stack.topics import ensure_topics
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, encode, topic_specs


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def interleaved_events(sessions: int, per_session: int) -> list[CloudEvent[Any]]:
    """Events of `sessions` concurrent sessions, ~500 bytes each once encoded."""
    groups = [session_events(f"bench-{uuid.uuid4().hex[:8]}-{n}", per_session)
              for n in range(sessions)]
    return [event for batch in zip(*groups, strict=True) for event in batch]


def mean_size(events: Sequence[CloudEvent[Any]]) -> float:
    return statistics.fmean(len(encode(e)) for e in events[::max(1, len(events) // 1000)])


@contextmanager
def scratch_topic(bootstrap: str) -> Iterator[str]:
    """A fresh copy of the events topic, deleted afterwards."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    spec = next(s for s in topic_specs(prefix) if s.name == prefix + EVENTS_TOPIC)
    asyncio.run(ensure_topics(bootstrap, [spec]))
    try:
        yield spec.name
    finally:
        asyncio.run(_delete_topic(bootstrap, spec.name))


async def _delete_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A folder under the repository's `.turnlog/bench/`, removed afterwards."""
    path = load_settings().state_dir / "bench" / f"{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_arguments(description: str, *, events: int = 4000) -> argparse.Namespace:
    """The options the loop benchmarks share (events, repeats, sessions, the GIL switch
    interval); the switch interval is applied here, for the whole run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for the run, seconds (Python's: 0.005)")
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    return args
