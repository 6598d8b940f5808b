"""Helpers of the streams worker's integration and fault tests (no tests here): the
worker as a subprocess with its own topics, PostgreSQL schema and chDB folder; producing
and reading Kafka; waiting until the worker has caught up; a reference projection made
in the test process to compare with."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from psycopg import sql

from tests.conftest import unique
from turnlog.infra.stack.config import REPO_ROOT
from turnlog.infra.stack.topics import ensure_topics
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.query_endpoint import EndpointStore, published_endpoint
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.checksum import checksum
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, topic_specs

CLICKHOUSE_DATABASE = "turnlog"
READY = "the streams worker is consuming"
"""What the worker logs once every projection has joined its group."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class StreamsEnv:
    """One worker's world: topics (by prefix), schema, chDB folder, group, ports."""

    bootstrap: str
    dsn: str
    root: Path
    prefix: str = field(default_factory=lambda: unique("streams-") + ".")
    schema: str = field(default_factory=lambda: unique("streams_"))
    group: str = field(default_factory=lambda: unique("streams-group-"))
    metrics_port: int = field(default_factory=free_port)
    batch_size: int = 1000
    projections: tuple[str, ...] = ("postgres", "clickhouse", "derived")
    """What the worker runs (`--projection`), each its own consumer group."""
    chdb_folder: Path | None = None
    """Another worker's chDB folder (to see it refused); default: this one's own."""

    @property
    def events_topic(self) -> str:
        return self.prefix + EVENTS_TOPIC

    def groups(self) -> list[str]:
        """The consumer group of each projection the worker runs."""
        return [f"{self.group}-{name}" for name in self.projections]

    def argv(self) -> list[str]:
        projections = [arg for name in self.projections for arg in ("--projection", name)]
        return [sys.executable, "-m", "turnlog.streams", "worker", *projections]

    def topic(self, base: str) -> str:
        return self.prefix + base

    @property
    def chdb_dir(self) -> Path:
        return self.chdb_folder or self.root / "chdb"

    def create(self) -> None:
        asyncio.run(ensure_topics(self.bootstrap, topic_specs(self.prefix)))
        migrate_postgres(self.dsn, schema=self.schema)

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))
        asyncio.run(_delete_topics(self.bootstrap, [s.name for s in topic_specs(self.prefix)]))

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "TURNLOG_KAFKA_BOOTSTRAP": self.bootstrap,
            "TURNLOG_TOPIC_PREFIX": self.prefix,
            "TURNLOG_POSTGRES_DSN": self.dsn,
            "TURNLOG_POSTGRES_SCHEMA": self.schema,
            "TURNLOG_CLICKHOUSE_URL": f"chdb://{self.chdb_dir}",
            "TURNLOG_CLICKHOUSE_DATABASE": CLICKHOUSE_DATABASE,
            "TURNLOG_STREAMS_CONSUMER_GROUP": self.group,
            "TURNLOG_STREAMS_DATA_DIR": str(self.root / "data"),
            "TURNLOG_STREAMS_METRICS_PORT": str(self.metrics_port),
            "TURNLOG_STREAMS_QUERY_PORT": "0",
            "TURNLOG_STREAMS_SESSION_TIMEOUT": os.environ.get(
                "TURNLOG_STREAMS_SESSION_TIMEOUT", "3"),
            "TURNLOG_STREAMS_BATCH_SIZE": str(self.batch_size),
            "TURNLOG_STREAMS_BATCH_WITHIN": "0.2",
        }

    def pg(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)

    def pg_checksum(self) -> dict[str, str]:
        with self.pg() as conn:
            return checksum(conn, self.schema)

    def pg_count(self, table: str) -> int:
        with self.pg() as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(self.schema, table))).fetchone()
        return int(row[0]) if row else 0

    def clickhouse(self) -> EndpointStore:
        """The worker's chDB, through the query endpoint it publishes while it runs."""
        return EndpointStore(published_endpoint(self.chdb_dir), timeout_s=60)


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


class WorkerProcess:
    """`python -m turnlog.streams worker` in a subprocess, logging to a file."""

    def __init__(self, env: StreamsEnv) -> None:
        self.env = env
        self.log = env.root / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._offset = 0

    def start(self, *, timeout: float = 90) -> None:
        self.launch()
        self.wait_ready(timeout=timeout)

    def launch(self) -> None:
        """Start the process; `wait_ready` waits until it is ready."""
        self.env.root.mkdir(parents=True, exist_ok=True)
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.env.argv(), "--loglevel", "info"],
                cwd=REPO_ROOT, env=self.env.environment(), stdout=log, stderr=log,
            )  # fmt: skip
        self.starts += 1

    def wait_ready(self, *, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while READY not in self.log.read_text(errors="replace")[self._offset:]:
            if self.process is None or self.process.poll() is not None \
                    or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{self.tail()}")
            time.sleep(0.1)

    def run_until_exit(self, *, timeout: float = 90) -> tuple[int, str]:
        """Run a worker that is expected to stop by itself (a refused start)."""
        self.env.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                self.env.argv(),
                cwd=REPO_ROOT, env=self.env.environment(), stdout=log, stderr=log,
            )  # fmt: skip
        code = process.wait(timeout)
        return code, self.log.read_text(errors="replace")

    def stop(self, *, timeout: float = 60) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)
        finally:
            self.process = None

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
            self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def metrics(self) -> str:
        import urllib.request

        url = f"http://127.0.0.1:{self.env.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())


@contextmanager
def running_worker(env: StreamsEnv) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(env)
    worker.start()
    try:
        yield worker
    finally:
        code = worker.stop()
        if code not in (0, None):
            print(f"the worker exited with {code}:\n{worker.tail()}")


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[str, bytes]]
) -> list[tuple[int, int]]:
    """Produce (key, value) records in order; their (partition, offset)."""

    async def run() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=3 * 1024 * 1024,
            linger_ms=5, max_batch_size=512 * 1024,
        )  # fmt: skip
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key.encode())
                       for key, value in records]
            sent = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return [(m.partition, m.offset) for m in sent]

    return asyncio.run(run())


def read_topic(
    bootstrap: str, topic: str, *, isolation_level: str = "read_committed"
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` now, by partition and offset (committed ones only, unless
    `isolation_level="read_uncommitted"`: the derived topics are written in transactions)."""

    async def run() -> list[ConsumerRecord[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False,
            max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
            isolation_level=isolation_level,
        )  # fmt: skip
        await consumer.start()
        try:
            partitions = await topic_partitions(bootstrap, topic)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)  # the last stable offsets
            records: list[ConsumerRecord[bytes, bytes]] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=1000)
                for batch in batches.values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        return sorted(records, key=lambda r: (r.partition, r.offset))

    return asyncio.run(run())


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


def committed_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` past the group's committed offsets."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await admin.start()
        await consumer.start()
        try:
            partitions = await topic_partitions(bootstrap, topic)
            ends = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        finally:
            await consumer.stop()
            await admin.close()
        done = {tp: (meta.offset if meta.offset >= 0 else 0) for tp, meta in committed.items()}
        return sum(max(ends[tp] - done.get(tp, 0), 0) for tp in partitions)

    return asyncio.run(run())


def wait_caught_up(env: StreamsEnv, worker: WorkerProcess, *, timeout: float = 120) -> float:
    """Wait until every projection's group has committed the whole events topic (each
    commits after its positions are stored with its results); seconds."""
    began = time.monotonic()
    while (lag := sum(committed_lag(env.bootstrap, group, env.events_topic)
                      for group in env.groups())) > 0:
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{worker.tail()}")
        if time.monotonic() - began > timeout:
            raise AssertionError(f"still {lag} records behind after {timeout}s:\n{worker.tail()}")
        time.sleep(0.25)
    return time.monotonic() - began


class Reference:
    """The read models the worker should reach, made in the test process with the
    projections themselves (PostgreSQL schema of its own, ClickHouse database of its own
    in the test process's chDB)."""

    def __init__(self, dsn: str, store: AnalyticsStore) -> None:
        self.dsn, self.store = dsn, store
        self.schema = unique("reference_")
        self.database = unique("reference_")
        migrate_postgres(dsn, schema=self.schema)
        migrate_clickhouse(store, database=self.database)
        self._offset = 0

    def add(self, events: list[CloudEvent[Any]]) -> None:
        records = [SourceRecord("reference", 0, self._offset + i, e) for i, e in enumerate(events)]
        self._offset += len(records)
        with PostgresProjection(self.dsn, schema=self.schema, consumer="reference") as pg:
            pg.apply_batch(records)
        ClickHouseProjection(self.store, database=self.database).write_batch(records)

    def pg_checksum(self) -> dict[str, str]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return checksum(conn, self.schema)

    def ch_checksum(self) -> dict[str, str]:
        return queries.checksum(self.store, self.database)

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))
        self.store.command(f"DROP DATABASE IF EXISTS `{self.database}`")


EXACT_ANSWERS = (
    "SELECT count() FROM events FINAL",
    "SELECT uniqExact(session_id, sequence) FROM events",
    "SELECT count() FROM turn_facts FINAL",
    "SELECT count() FROM metrics FINAL",
    "SELECT count() FROM errors FINAL",
    "SELECT sum(samples), sum(total_us) FROM latency_1m",
    "SELECT sum(errors), sum(unrecoverable) FROM errors_1m",
    "SELECT sum(requests), sum(input_tokens), sum(audio_us) FROM usage_1m",
)
"""What readers get, which an event the log holds twice, or a batch written twice cut
differently, must not change: base tables read with FINAL (their engines deduplicate on
the event's identity; raw row counts may hold a duplicate until a merge), and the rollups'
sums (views over the deduplicated tables)."""


def exact_answers(store: AnalyticsStore, database: str) -> dict[str, tuple[Any, ...]]:
    return {query: tuple(store.query(query, database=database)[0]) for query in EXACT_ANSWERS}
