"""The log survives a broker: on a three-broker KRaft cluster (replication 3,
`min.insync.replicas=2`), the gateway's publisher records 200 sessions while the leader
of several partitions is killed with SIGKILL; the streams worker then projects the log
with that broker still dead. Every event the publisher acknowledged is in PostgreSQL's
ledger and in ClickHouse's `events` exactly once (with FINAL and without).

The test relies only on the worker's CLI, its environment and the stores' contents.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry
from psycopg import sql

from tests.conftest import PgSchema, unique
from tests.faults.kafka_cluster import KafkaCluster, most_led
from tests.integration.test_streams_support import read_topic
from tests.unit.test_streams_support import SESSIONS, renamed
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.infra.stack.config import REPO_ROOT, StackSettings
from turnlog.infra.stack.kafka import GROUP_MIN_SESSION_TIMEOUT_MS, Kafka
from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, decode

pytestmark = pytest.mark.faults

SESSION_COUNT = 200
STEPS = 30
"""Publishing happens in steps 0.1 s apart; the broker dies right after step `KILL_AT`,
once the publisher has had events acknowledged."""
KILL_AT = 10
CLICKHOUSE_DATABASE = "turnlog"

Pair = tuple[str, int]


@pytest.fixture(scope="module")
def kafka_cluster(
    stack_settings: StackSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaCluster]:
    """Three brokers of our own, from the stack's jars, with their data in a tmp folder;
    stopped (every process reaped) and removed at the end."""
    cluster = KafkaCluster(root=tmp_path_factory.mktemp("kafka-cluster"),
                           libs=Kafka(stack_settings).ensure_jars())
    try:
        took = cluster.start()
        print(f"\nthree-broker cluster up in {took:.1f} s: {cluster.bootstrap}")
        yield cluster
    finally:
        cluster.stop()


def test_consumers_may_use_session_timeouts_of_a_few_seconds(
    kafka_cluster: KafkaCluster,
) -> None:
    """The broker setting of the stack (`group.min.session.timeout.ms`) is in force: a
    consumer with a 3 s session joins its group (the broker's default floor is 6 s)."""
    for node in kafka_cluster.nodes:
        if node.running():
            assert kafka_cluster.broker_config(
                node.node_id, "group.min.session.timeout.ms"
            ) == str(GROUP_MIN_SESSION_TIMEOUT_MS)
    [events] = [s.name for s in kafka_cluster.create_topics(unique("timeout-") + ".")
                if s.name.endswith(EVENTS_TOPIC)]

    async def join() -> int:
        consumer = AIOKafkaConsumer(
            events, bootstrap_servers=kafka_cluster.bootstrap, group_id=unique("short-"),
            session_timeout_ms=3000, heartbeat_interval_ms=1000, enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=200)
            return len(consumer.assignment())
        finally:
            await consumer.stop()

    assert asyncio.run(join()) == 12


def test_a_broker_killed_while_recording_loses_and_doubles_nothing(
    kafka_cluster: KafkaCluster, pg_schema: PgSchema, tmp_path: Path
) -> None:
    began = time.monotonic()
    seed = random.randrange(2**32)
    print(f"\nseed {seed}")
    events = recorded_sessions(SESSION_COUNT, random.Random(seed))
    expected = {(e.sessionid, e.sequence) for e in events}
    assert len(expected) == len(events)

    prefix = unique("cluster-") + "."
    kafka_cluster.create_topics(prefix)
    topic = prefix + EVENTS_TOPIC
    led_before = kafka_cluster.leaders(topic)
    victim = most_led(led_before, kafka_cluster.node_ids())
    orphaned = sorted(p for p, leader in led_before.items() if leader == victim)
    assert orphaned

    stats = asyncio.run(publish_killing(kafka_cluster, topic, events, victim, tmp_path))
    print(f"published {len(events)} events of {SESSION_COUNT} sessions; killed node "
          f"{victim}, leader of partitions {orphaned}, with {stats['published_at_kill']} "
          f"published and {stats['sent_at_kill']} acknowledged; publisher {stats}")
    assert (stats["sent"], stats["failed"], stats["dropped"]) == (len(events), 0, 0)
    assert 0 < stats["sent_at_kill"] <= stats["published_at_kill"] < len(events)

    after = wait_fenced(kafka_cluster, topic, victim)
    assert all(p["leader"] != victim and victim not in p["isr"] for p in after)
    assert all(len(p["isr"]) == 2 for p in after)  # two of three in sync
    logged = Counter((e.sessionid, e.sequence) for e in
                     (decode(r.value) for r in read_topic(kafka_cluster.bootstrap, topic)))
    assert set(logged) == expected
    print(f"log: {sum(logged.values())} records, "
          f"{sum(logged.values()) - len(logged)} repeated by the publisher's retries")

    chdb = tmp_path / "chdb"
    worker = Worker(tmp_path, {
        "TURNLOG_KAFKA_BOOTSTRAP": kafka_cluster.bootstrap,
        "TURNLOG_TOPIC_PREFIX": prefix,
        "TURNLOG_POSTGRES_DSN": pg_schema.dsn,
        "TURNLOG_POSTGRES_SCHEMA": pg_schema.name,
        "TURNLOG_CLICKHOUSE_URL": f"chdb://{chdb}",
        "TURNLOG_STREAMS_METRICS_PORT": "0",
        "TURNLOG_STREAMS_QUERY_PORT": "0",
        "TURNLOG_STREAMS_DATA_DIR": str(tmp_path / "data"),
    })
    projected = time.monotonic()
    codes = project_until_complete(worker, pg_schema, chdb, len(events))
    print(f"projected in {time.monotonic() - projected:.1f} s (worker runs: {len(codes)})")
    assert codes == [0] * len(codes), worker.tail()
    assert not kafka_cluster.node(victim).running()

    assert_postgres_exact(pg_schema, events, expected)
    clickhouse = clickhouse_counts(chdb)
    print("ClickHouse events: " + ", ".join(
        f"{name} {value}" for name, value in clickhouse.items() if name != "pair_set"))
    assert clickhouse["rows"] == clickhouse["final_rows"] == clickhouse["pairs"] == len(events)
    assert clickhouse["pair_set"] == expected
    print(f"0 lost, 0 duplicated of {len(events)} events; took {time.monotonic() - began:.1f} s")


# -- the sessions and the publisher ------------------------------------------------------
def recorded_sessions(count: int, rng: random.Random) -> list[CloudEvent[Any]]:
    """`count` sessions, each a renamed copy of a recorded one chosen by `rng`, their
    events interleaved at random with each session's order kept (as the gateway sees
    concurrent conversations)."""
    templates = [SESSIONS[name] for name in sorted(SESSIONS)]
    sessions = [renamed(rng.choice(templates), f"~{n:03d}") for n in range(count)]
    turns = [i for i, session in enumerate(sessions) for _ in session]
    rng.shuffle(turns)
    nexts = [iter(session) for session in sessions]
    return [next(nexts[i]) for i in turns]


async def publish_killing(
    cluster: KafkaCluster, topic: str, events: list[CloudEvent[Any]], victim: int,
    tmp_path: Path,
) -> dict[str, int]:
    """Publish `events` in steps, kill -9 `victim` right after step `KILL_AT` (with its
    batches in flight), and wait until the publisher has every event acknowledged."""
    settings = PublisherSettings(bootstrap_servers=cluster.bootstrap, topic=topic,
                                 spool_dir=tmp_path / "spool")
    publisher = Publisher(settings, registry=CollectorRegistry())
    at_kill: dict[str, int] = {}
    await publisher.start()
    try:
        size = -(-len(events) // STEPS)
        for step in range(STEPS):
            if step == KILL_AT:  # producing in earnest: the producer is up and acknowledged
                await until(lambda: publisher.stats().sent > 0, within=30)
            for event in events[step * size:(step + 1) * size]:
                publisher.publish(event)
            if step == KILL_AT:  # right after a step: its events are in flight
                at_kill = {"published_at_kill": (step + 1) * size,
                           "sent_at_kill": publisher.stats().sent}
                await asyncio.to_thread(cluster.kill, victim)
            await asyncio.sleep(0.1)
        await until(lambda: publisher.stats().sent >= len(events), within=90)
    finally:
        await publisher.aclose()
    stats = publisher.stats()
    return {"sent": stats.sent, "failed": stats.failed, "dropped": stats.dropped,
            "spooled": stats.spooled, **at_kill}


async def until(condition: Callable[[], bool], *, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not met within {within:.0f} s"
        await asyncio.sleep(0.05)


def wait_fenced(cluster: KafkaCluster, topic: str, victim: int) -> list[dict[str, Any]]:
    """The partitions once the dead node has left every ISR (the controller fences it)."""
    deadline = time.monotonic() + 30
    while True:
        partitions = cluster.partitions(topic)
        if all(victim not in p["isr"] and p["leader"] not in (victim, -1) for p in partitions):
            return partitions
        assert time.monotonic() < deadline, f"node {victim} still listed: {partitions}"
        time.sleep(0.3)


# -- the worker ------------------------------------------------------------------------
class Worker:
    """`python -m turnlog.streams worker` with the test's environment, logging to a file."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.log = root / "worker.log"
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "turnlog.streams", "worker"],
                cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then SIGKILL after `timeout` s; the exit code (reaped)."""
        if self.process is None:
            return 0
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(30)

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def project_until_complete(
    worker: Worker, schema: PgSchema, chdb: Path, total: int, *, within: float = 150
) -> list[int]:
    """Run the worker until PostgreSQL's ledger and ClickHouse's `events` hold `total`
    events; the worker's exit codes (one per run).

    ClickHouse is watched through the worker's query endpoint; a worker publishing none
    is stopped once PostgreSQL is complete, the folder read, and started again while
    ClickHouse lags (each projection moves on its own)."""
    deadline = time.monotonic() + within
    codes: list[int] = []
    while True:
        worker.start()
        try:
            wait_for(lambda: ledger_count(schema) >= total, worker, what="PostgreSQL",
                     within=deadline - time.monotonic())
            while (seen := clickhouse_final_count(chdb)) not in (total, None):
                assert worker.alive(), f"the worker exited:\n{worker.tail()}"
                assert time.monotonic() < deadline, f"ClickHouse has {seen} of {total}:\n" \
                                                    f"{worker.tail()}"
                time.sleep(0.5)
        finally:
            codes.append(worker.stop())
        if seen == total or clickhouse_final_count(chdb) == total:
            return codes
        assert time.monotonic() < deadline, f"ClickHouse incomplete:\n{worker.tail()}"
        time.sleep(5)  # before the next run: the lagging projection catches up in it


def wait_for(done: Callable[[], bool], worker: Worker, *, what: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert worker.alive(), f"the worker exited while {what} caught up:\n{worker.tail()}"
        assert time.monotonic() < deadline, f"{what} not complete in {within:.0f} s:\n" \
                                            f"{worker.tail()}"
        time.sleep(0.5)


# -- the stores --------------------------------------------------------------------------
def pg(schema: PgSchema) -> psycopg.Connection[tuple[Any, ...]]:
    conn = psycopg.connect(schema.dsn, autocommit=True)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema.name)))
    return conn


def ledger_count(schema: PgSchema) -> int:
    with pg(schema) as conn:
        row = conn.execute("SELECT count(*) FROM applied_events").fetchone()
    return int(row[0]) if row else 0


def assert_postgres_exact(
    schema: PgSchema, events: list[CloudEvent[Any]], expected: set[Pair]
) -> None:
    """The ledger holds each pair once; sessions and messages are what the projection's
    own rules make of the events applied once each."""
    reference = InMemoryProjection()
    reference.apply_batch([SourceRecord("reference", 0, i, e) for i, e in enumerate(events)])
    want_sessions = {r["session_id"]: (r["event_count"], r["last_sequence"])
                     for r in reference.rows("sessions")}
    with pg(schema) as conn:
        ledger = conn.execute("SELECT session_id, sequence FROM applied_events").fetchall()
        sessions = conn.execute(
            "SELECT session_id, event_count, last_sequence FROM sessions").fetchall()
        [messages] = conn.execute("SELECT count(*) FROM messages").fetchone() or [None]
    pairs = Counter((str(s), int(q)) for s, q in ledger)
    print(f"PostgreSQL: {len(ledger)} ledger rows, {len(sessions)} sessions, "
          f"{messages} messages")
    assert set(pairs) == expected
    assert max(pairs.values()) == 1
    assert {str(s): (int(c), int(q)) for s, c, q in sessions} == want_sessions
    assert messages == len(reference.rows("messages"))


def clickhouse_query(chdb: Path, statement: str) -> list[list[Any]] | None:
    """Rows of a read-only query through the analytics CLI: the owner's query endpoint
    while the worker runs, the folder itself once it stopped. None: not reachable now."""
    result = subprocess.run(
        [sys.executable, "-m", "turnlog.projections.clickhouse", "query", statement,
         "--url", f"chdb://{chdb}", "--database", CLICKHOUSE_DATABASE, "--format", "json",
         "--timeout", "60", "--max-rows", "100000"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if result.returncode == 3:
        return None
    try:
        payload = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"the query failed ({result.returncode}): {result.stderr}") from None
    assert not payload["truncated"], f"more rows than asked for: {statement}"
    return list(payload["rows"])


def clickhouse_final_count(chdb: Path) -> int | None:
    rows = clickhouse_query(chdb, "SELECT count() FROM events FINAL")
    return None if rows is None else int(rows[0][0])


def clickhouse_counts(chdb: Path) -> dict[str, Any]:
    [[rows, pairs]] = clickhouse_query(
        chdb, "SELECT count(), uniqExact(session_id, sequence) FROM events") or [[-1, -1]]
    [[final_rows]] = clickhouse_query(chdb, "SELECT count() FROM events FINAL") or [[-1]]
    listed = clickhouse_query(chdb, "SELECT session_id, sequence FROM events") or []
    return {"rows": int(rows), "final_rows": int(final_rows), "pairs": int(pairs),
            "pair_set": {(str(s), int(q)) for s, q in listed}}
