"""kill -9 of the streams worker in the middle of a backlog, twice, then a restart: the
read models are exact (PostgreSQL, and ClickHouse with and without FINAL), nothing is
lost or doubled, and the DLQ and derived topics repeat only what at-least-once allows
(the same record, which consumers dedupe by its source position or its id)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_streams_support import (
    CLICKHOUSE_DATABASE,
    Reference,
    StreamsEnv,
    WorkerProcess,
    produce,
    read_topic,
    wait_caught_up,
    without_final,
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


def journal_of(env: StreamsEnv) -> Path:
    return env.root / "data" / f"clickhouse-journal-{env.group}.json"


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
    # Each kill lands inside a ClickHouse write (its journal entry exists), at a random
    # point: before its first insert, between two tables' inserts, before its positions.
    delays = random.Random().sample([0.0, 0.02, 0.04, 0.06, 0.08], 2)
    kill_when(worker, lambda: journal_of(env).exists(), delay=delays[0])
    applied_at_first_kill = env.pg_count("applied_events")
    recovered = journal_of(env).exists()
    worker.start()
    if recovered:
        assert "finishing a ClickHouse write a crash left unfinished" in worker.tail(400)
    kill_when(worker, lambda: env.pg_count("applied_events") > max(
        applied_at_first_kill, total // 2) and journal_of(env).exists(), delay=delays[1])
    worker.start()
    try:
        wait_caught_up(env, worker, timeout=240)
        assert 0 < applied_at_first_kill < total

        assert env.pg_count("applied_events") == total
        assert env.pg_checksum() == reference.pg_checksum()
        clickhouse = env.clickhouse()
        assert queries.checksum(clickhouse, CLICKHOUSE_DATABASE) == reference.ch_checksum()
        assert without_final(clickhouse, CLICKHOUSE_DATABASE) == without_final(
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
    """One id per turn: a record emitted again after a crash has the same id."""
    records = read_topic(env.bootstrap, env.topic(TURNS_TOPIC))
    ids = Counter(decode(r.value).id for r in records)
    keys = {(decode(r.value).sessionid, decode(r.value).data.turn_id) for r in records}
    assert len(keys) == turns
    assert len(ids) == turns
