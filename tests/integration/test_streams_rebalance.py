"""Partitions moving between two PostgreSQL projector processes of one group, on the real
broker and PostgreSQL: a second one joins while the first has a batch in flight (held
back by the exclusive projection lock), then the first stops. Nothing is lost and
nothing applied twice: every partition starts where the stored offsets say, the ledger
skips what the other member applied, and the read models are exact.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_streams_support import (
    Reference,
    StreamsEnv,
    WorkerProcess,
    free_port,
    produce,
    wait_caught_up,
)
from tests.unit.test_streams_support import all_events, bodies, renamed
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.streams.locks import exclusive_projection_lock

pytestmark = pytest.mark.integration

COPIES = 60
"""Copies of the recorded sessions: 8,400 events."""
ASSIGNED = re.compile(r"assigned partitions \[([0-9, ]*)\]")
STOPPED = re.compile(r"postgres: stopped after (\d+) batches of (\d+) records")


@pytest.fixture
def first(kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path) -> Iterator[StreamsEnv]:
    world = StreamsEnv(kafka_bootstrap, postgres_dsn, tmp_path / "first", batch_size=250,
                       projections=("postgres",))  # fmt: skip
    world.create()
    yield world
    world.drop()


def log_of(worker: WorkerProcess) -> str:
    return worker.log.read_text(errors="replace")


def wait_until(condition: Callable[[], bool], worker: WorkerProcess, what: str) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        assert worker.alive(), worker.tail()
        assert time.monotonic() < deadline, f"{what}:\n{worker.tail()}"
        time.sleep(0.1)


def assignments(worker: WorkerProcess) -> list[list[int]]:
    return [[int(p) for p in found.split(",") if p.strip()]
            for found in ASSIGNED.findall(log_of(worker))]  # fmt: skip


def committed_records(worker: WorkerProcess) -> int:
    (found,) = STOPPED.findall(log_of(worker))
    return int(found[1])


def test_a_rebalance_mid_batch_loses_nothing_and_repeats_nothing(
    first: StreamsEnv, postgres_dsn: str, analytics_store: AnalyticsStore, tmp_path: Path
) -> None:
    events = [e for copy in range(COPIES) for e in renamed(all_events(), f"~moving{copy}")]
    produce(first.bootstrap, first.events_topic, bodies(events))
    reference = Reference(postgres_dsn, analytics_store)
    second = dataclasses.replace(first, root=tmp_path / "second", metrics_port=free_port())
    one, two = WorkerProcess(first), WorkerProcess(second)
    try:
        with first.pg() as conn, exclusive_projection_lock(conn):
            # the first worker's first batch waits for the lock, in flight, when the
            # second joins: the revocation must finish and commit it, then hand over
            one.start()
            wait_until(lambda: len(assignments(one)) == 1, one, "the first worker assigned")
            two.launch()  # ready once it has joined, which waits for the revocation
            wait_until(lambda: log_of(one).count("Revoking previously assigned") >= 2, one,
                       "the first worker's partitions revoked")  # fmt: skip
            time.sleep(1)
        two.wait_ready()
        wait_until(lambda: len(assignments(one)) >= 2, one, "the first worker reassigned")
        wait_until(lambda: len(assignments(two)) >= 1, two, "the second worker assigned")
        assert len(assignments(one)[-1]) < 12
        wait_until(lambda: consumed(two) > 0, two, "the second worker committed a batch")
        assert one.stop() == 0, one.tail()  # leaves the group: the second takes it all
        wait_until(lambda: assignments(two)[-1] == list(range(12)), two, "all partitions")
        wait_caught_up(second, two, timeout=180)
        assert two.stop() == 0, two.tail()

        assert first.pg_count("applied_events") == len(events)
        reference.add(events)
        assert first.pg_checksum() == reference.pg_checksum()
        assert committed_records(one) > 0
        assert committed_records(two) > 0
        # a batch dropped at the revocation is applied again by the next owner: at least
        # the backlog between them, and the ledger kept every event once
        assert committed_records(one) + committed_records(two) >= len(events)
    finally:
        one.stop()
        two.stop()
        reference.drop()


def consumed(worker: WorkerProcess) -> float:
    for line in worker.metrics().splitlines():
        if line.startswith('turnlog_streams_records_consumed_total{projection="postgres"}'):
            return float(line.split()[1])
    return 0.0
