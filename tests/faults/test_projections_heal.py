"""Projections heal by themselves, on a PostgreSQL and a Kafka broker of the test's own
(the shared stack is never stopped):

- PostgreSQL down while a projector restarts: it waits (alive, saying what for), then
  resumes where its stored offsets say, exact.
- A projector killed (kill -9) beside another of its group: its partitions are served
  again within a few seconds (session timeout 3 s); the seconds are printed.
- The ClickHouse projection down for a minute: PostgreSQL stays as fresh as before, and
  ClickHouse catches up, exact, once it is back.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from psycopg import sql

from tests.conftest import unique
from tests.faults.conftest import TEST_STACKS, IsolatedBroker, free_port
from tests.integration.test_streams_support import (
    CLICKHOUSE_DATABASE,
    Reference,
    StreamsEnv,
    WorkerProcess,
    exact_answers,
    produce,
    wait_caught_up,
)
from tests.unit.test_streams_support import all_events, bodies, renamed
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.postgres import Postgres
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.store import AnalyticsStore

pytestmark = pytest.mark.faults

ASSIGNED = re.compile(r"postgres: assigned partitions \[([0-9, ]*)\]")


@pytest.fixture(scope="module")
def isolated_postgres(stack_settings: StackSettings) -> Iterator[Postgres]:
    """A PostgreSQL cluster of this module's own, which the tests stop and start."""
    state_dir = TEST_STACKS / unique("pg-")
    settings = StackSettings(state_dir=state_dir, cache_dir=stack_settings.cache_dir,
                             postgres_port=free_port())  # fmt: skip
    server = Postgres(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def dsn_of(server: Postgres) -> str:
    return server.settings.postgres_dsn


def test_postgres_down_while_a_projector_restarts_is_waited_for(
    isolated_postgres: Postgres, kafka_bootstrap: str, analytics_store: AnalyticsStore,
    tmp_path: Path,
) -> None:  # fmt: skip
    env = StreamsEnv(kafka_bootstrap, dsn_of(isolated_postgres), tmp_path, batch_size=200,
                     projections=("postgres",))  # fmt: skip
    env.create()
    worker = WorkerProcess(env)
    first = [e for copy in range(5) for e in renamed(all_events(), f"~before{copy}")]
    then = [e for copy in range(5) for e in renamed(all_events(), f"~after{copy}")]
    reference = Reference(dsn_of(isolated_postgres), analytics_store)
    try:
        worker.start()
        produce(env.bootstrap, env.events_topic, bodies(first))
        wait_caught_up(env, worker)
        worker.kill()
        isolated_postgres.stop()
        produce(env.bootstrap, env.events_topic, bodies(then))
        worker.launch()
        deadline = time.monotonic() + 60
        while "waiting for PostgreSQL" not in worker.tail(200):
            assert worker.alive(), worker.tail()
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        time.sleep(3)
        assert worker.alive(), "a projector whose database is down waits, it does not exit"
        isolated_postgres.start()
        worker.wait_ready(timeout=90)
        wait_caught_up(env, worker)
        reference.add(first + then)
        assert env.pg_count("applied_events") == len(first) + len(then)
        assert env.pg_checksum() == reference.pg_checksum()
    finally:
        if not isolated_postgres.status().running:
            isolated_postgres.start()
        assert worker.stop() == 0, worker.tail()
        reference.drop()
        env.drop()


def test_a_killed_projector_s_partitions_are_served_again_within_seconds(
    broker: IsolatedBroker, postgres_dsn: str, tmp_path: Path
) -> None:
    env = StreamsEnv(broker.bootstrap, postgres_dsn, tmp_path / "one", batch_size=200,
                     projections=("postgres",))  # fmt: skip
    env.create()
    other = dataclasses.replace(env, root=tmp_path / "two", metrics_port=free_port())
    one, two = WorkerProcess(env), WorkerProcess(other)
    try:
        one.start()
        wait_assigned(one, lambda parts: len(parts) == 12)
        two.start()
        wait_assigned(two, lambda parts: 0 < len(parts) < 12)
        wait_assigned(one, lambda parts: 0 < len(parts) < 12)
        killed_at = time.monotonic()
        one.kill()
        wait_assigned(two, lambda parts: len(parts) == 12, timeout=30)
        moved = time.monotonic() - killed_at
        events = [e for copy in range(3) for e in renamed(all_events(), f"~moved{copy}")]
        produce(env.bootstrap, env.events_topic, bodies(events))
        wait_caught_up(other, two, timeout=60)
        served = time.monotonic() - killed_at
        print(f"\npartitions of a killed projector: reassigned after {moved:.2f} s, "
              f"new events in every partition applied {served:.2f} s after the kill")
        assert env.pg_count("applied_events") == len(events)
        assert moved <= 5.0, f"partitions moved after {moved:.1f} s:\n{two.tail()}"
    finally:
        one.stop()
        assert two.stop() == 0, two.tail()
        env.drop()


def wait_assigned(worker: WorkerProcess, wanted: object, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = ASSIGNED.findall(worker.log.read_text(errors="replace"))
        parts = [int(p) for p in found[-1].split(",") if p.strip()] if found else None
        if parts is not None and wanted(parts):  # type: ignore[operator]
            return
        assert worker.alive(), worker.tail()
        assert time.monotonic() < deadline, f"assignment never right ({parts}):\n{worker.tail()}"
        time.sleep(0.05)


OUTAGE = 60.0
"""Seconds the ClickHouse projection is down."""


def test_clickhouse_down_for_a_minute_leaves_postgres_fresh_and_then_catches_up(
    kafka_bootstrap: str, postgres_dsn: str, analytics_store: AnalyticsStore, tmp_path: Path
) -> None:
    """ClickHouse is embedded (chDB), so its outage is its projector's: killed for a
    minute, then started again. The PostgreSQL projection, another group in another
    process, goes on as before; then ClickHouse catches up, exact."""
    env = StreamsEnv(kafka_bootstrap, postgres_dsn, tmp_path / "pg", batch_size=2000,
                     projections=("postgres",))  # fmt: skip
    env.create()
    ch_env = dataclasses.replace(env, root=tmp_path / "ch", metrics_port=free_port(),
                                 chdb_folder=tmp_path / "chdb", projections=("clickhouse",))
    pg_worker, ch_worker = WorkerProcess(env), WorkerProcess(ch_env)
    reference = Reference(postgres_dsn, analytics_store)
    sent: list[Any] = []
    try:
        pg_worker.start()
        ch_worker.start()
        before = [visible_after(env, pg_worker, f"~fresh{i}", sent) for i in range(8)]
        ch_worker.kill()
        down_at = time.monotonic()
        during: list[float] = []
        while time.monotonic() - down_at < OUTAGE:
            during.append(visible_after(env, pg_worker, f"~down{len(during)}", sent))
            time.sleep(0.5)
        ch_worker.start()
        wait_caught_up(ch_env, ch_worker, timeout=120)
        wait_caught_up(env, pg_worker)
        print(f"\nPostgreSQL freshness (produce to visible), p50 / max: before "
              f"{median(before):.3f} / {max(before):.3f} s ({len(before)} samples), with "
              f"ClickHouse down {median(during):.3f} / {max(during):.3f} s ({len(during)})")
        assert max(during) <= max(1.0, 3 * max(before)), (before, during)
        reference.add(sent)
        clickhouse = ch_env.clickhouse()
        assert queries.checksum(clickhouse, CLICKHOUSE_DATABASE) == reference.ch_checksum()
        assert exact_answers(clickhouse, CLICKHOUSE_DATABASE) == exact_answers(
            reference.store, reference.database)
        assert env.pg_checksum() == reference.pg_checksum()
    finally:
        pg_worker.stop()
        ch_worker.stop()
        reference.drop()
        env.drop()


def visible_after(env: StreamsEnv, worker: WorkerProcess, suffix: str, sent: list[Any]) -> float:
    """Produce a copy of the recorded sessions; seconds until PostgreSQL has all of it."""
    events = renamed(all_events(), suffix)
    began = time.monotonic()
    produce(env.bootstrap, env.events_topic, bodies(events))
    sent.extend(events)
    query = sql.SQL("SELECT count(*) FROM {} WHERE session_id LIKE %s").format(
        sql.Identifier(env.schema, "applied_events"))
    with env.pg() as conn:
        while True:
            row = conn.execute(query, (f"%{suffix}",)).fetchone()
            if row is not None and row[0] == len(events):
                return time.monotonic() - began
            assert worker.alive(), worker.tail()
            assert time.monotonic() - began < 30, worker.tail()
            time.sleep(0.01)


def test_a_stop_with_kafka_down_ends_within_its_timeout(
    broker: IsolatedBroker, postgres_dsn: str, tmp_path: Path
) -> None:
    env = StreamsEnv(broker.bootstrap, postgres_dsn, tmp_path, batch_size=200,
                     projections=("postgres",))  # fmt: skip
    env.create()
    worker = WorkerProcess(env)
    try:
        worker.start()
        broker.stop()
        time.sleep(3)  # the consumer notices: fetches and heartbeats fail
        assert worker.alive(), worker.tail()
        began = time.monotonic()
        code = worker.stop(timeout=60)
        took = time.monotonic() - began
        print(f"\nSIGTERM with Kafka down: exit {code} after {took:.1f} s")
        assert code == 0, worker.tail()
        assert took <= 25, worker.tail()
        lines = worker.log.read_text(errors="replace").splitlines()
        assert len(lines) < 2000, "client errors are rate-limited in the log"
    finally:
        broker.start()
        worker.stop()
        env.drop()
