"""kill -9 of the streams worker (every projection) in the middle of a backlog, twice, at
random moments, then a restart: the read models are exact (PostgreSQL, and ClickHouse
with and without FINAL), nothing is lost or doubled, the DLQ repeats only what
at-least-once allows (the same record, deduped by its source position), and the derived
turns are one final record per turn (the latest revision), whatever was re-emitted."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_streams_support import (
    CLICKHOUSE_DATABASE,
    Reference,
    StreamsEnv,
    WorkerProcess,
    exact_answers,
    produce,
    read_topic,
    wait_caught_up,
)
from tests.unit.test_streams_support import (
    EXPECTED_REASON,
    all_events,
    bad_body,
    bodies,
    renamed,
)
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.schemas import DLQ_TOPIC, TURNS_TOPIC, decode
from turnlog.streams.dlq import decoded_headers

pytestmark = pytest.mark.faults

COPIES = 60
"""Copies of the recorded sessions in the backlog: 8,400 events."""
BAD = ("bad_json", "unknown_type", "invalid_utf8")


@pytest.fixture
def env(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> Iterator[StreamsEnv]:
    world = StreamsEnv(kafka_bootstrap, postgres_dsn, tmp_path, batch_size=250)
    world.create()
    yield world
    world.drop()


@pytest.fixture
def reference(postgres_dsn: str, analytics_store: AnalyticsStore) -> Iterator[Reference]:
    made = Reference(postgres_dsn, analytics_store)
    yield made
    made.drop()


def kill_when(
    worker: WorkerProcess, ready: Callable[[], bool], *, delay: float, timeout: float = 120
) -> None:
    """kill -9 `delay` seconds after `ready()` is first true."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert worker.alive(), worker.tail()
        assert time.monotonic() < deadline, f"never ready to kill:\n{worker.tail()}"
        time.sleep(0.001)
    time.sleep(delay)
    worker.kill()


def test_kill_9_mid_batch_and_restart_give_exact_read_models(
    env: StreamsEnv, reference: Reference
) -> None:
    good = [e for copy in range(COPIES) for e in renamed(all_events(), f"~crash{copy}")]
    backlog: list[tuple[str, bytes]] = []
    bad_at: dict[int, str] = {}  # index in the backlog -> kind
    step = len(good) // (len(BAD) + 1)
    for i, (key, body) in enumerate(bodies(good), start=1):
        backlog.append((key, body))
        if i % step == 0 and i // step <= len(BAD):
            kind = BAD[i // step - 1]
            bad_at[len(backlog)] = kind
            backlog.append((key, bad_body(kind, good[i - 1])))
    positions = produce(env.bootstrap, env.events_topic, backlog)
    bad_positions = {positions[index]: kind for index, kind in bad_at.items()}
    reference.add(good)
    total = len(good)

    worker = WorkerProcess(env)
    worker.start()
    seed = random.randrange(1 << 30)
    print(f"\nkill seed {seed}")
    delays = random.Random(seed).sample([0.0, 0.05, 0.1, 0.15, 0.2, 0.3], 2)
    # the first kill once PostgreSQL has taken something, the second past half: each
    # lands wherever the three projections happen to be (mid-insert, mid-transaction)
    kill_when(worker, lambda: env.pg_count("applied_events") > 0, delay=delays[0])
    applied_at_first_kill = env.pg_count("applied_events")
    worker.start()
    kill_when(worker, lambda: env.pg_count("applied_events") > max(
        applied_at_first_kill, total // 2), delay=delays[1])
    worker.start()
    try:
        wait_caught_up(env, worker, timeout=240)
        assert 0 < applied_at_first_kill < total

        assert env.pg_count("applied_events") == total
        assert env.pg_checksum() == reference.pg_checksum()
        clickhouse = env.clickhouse()
        assert queries.checksum(clickhouse, CLICKHOUSE_DATABASE) == reference.ch_checksum()
        assert exact_answers(clickhouse, CLICKHOUSE_DATABASE) == exact_answers(
            reference.store, reference.database
        )
        assert_dead_letters(env, bad_positions)
        assert_derived_turns(env, turns=7 * COPIES)
    finally:
        assert worker.stop() == 0, worker.tail()


def assert_dead_letters(env: StreamsEnv, bad: dict[tuple[int, int], str]) -> None:
    """Every bad record is in the DLQ; a repeat (a crash between its delivery and the
    batch's commit) is the same record: same source position, same bytes."""
    letters = read_topic(env.bootstrap, env.topic(DLQ_TOPIC))
    by_source: dict[tuple[int, int], set[bytes]] = {}
    for letter in letters:
        headers = decoded_headers(tuple(letter.headers))
        source = (int(headers["turnlog-dlq-source-partition"]),
                  int(headers["turnlog-dlq-source-offset"]))
        assert headers["turnlog-dlq-reason"] == EXPECTED_REASON[bad[source]]
        by_source.setdefault(source, set()).add(letter.value)
    assert set(by_source) == set(bad)
    assert all(len(values) == 1 for values in by_source.values())


def assert_derived_turns(env: StreamsEnv, *, turns: int) -> None:
    """One final record per turn, the same whatever was re-emitted: every record of a
    turn with the same revision has the same id and payload (a re-emission after a crash
    is the same record)."""
    records = [decode(r.value) for r in read_committed(env, TURNS_TOPIC)]
    keys = {(e.sessionid, e.data.turn_id) for e in records}
    assert len(keys) == turns
    by_revision: dict[tuple[str, str, int], set[tuple[str, str]]] = {}
    for e in records:
        by_revision.setdefault((e.sessionid, e.data.turn_id, e.data.revision), set()).add(
            (e.id, e.data.model_dump_json()))
    assert all(len(versions) == 1 for versions in by_revision.values())
    assert len({k[:2] for k in by_revision}) == turns


def read_committed(env: StreamsEnv, base: str) -> list[Any]:
    return read_topic(env.bootstrap, env.topic(base), isolation_level="read_committed")
