"""Helpers of the rebuild tests (no tests here): recorded sessions produced to Kafka, a
"live" processor that consumes them as the worker does (the worker's `BatchProcessor`,
the shared projection lock, batches cut by a plain consumer), and the settings that
point a rebuild at the same log and projections."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from psycopg import sql

from tests.conftest import Topics, unique
from tests.unit.test_streams_support import all_events, renamed
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.schemas import CloudEvent, encode
from turnlog.streams.config import StreamsSettings
from turnlog.streams.decoding import raw_record
from turnlog.streams.rebuild.apply import ReplayProcessor
from turnlog.streams.rebuild.log import topic_partitions
from turnlog.streams.startup import PRODUCE_BYTES

GROUP = "turnlog-streams-test"
PG_CONSUMER = f"{GROUP}-postgres"
"""The PostgreSQL projection's consumer name (its group), under which it stores offsets."""


def session_copies(copies: int, *, first: int = 0) -> list[CloudEvent[Any]]:
    """`copies` renamed copies of the recorded sessions, interleaved by time."""
    events = all_events()
    copied = [e for i in range(first, first + copies) for e in renamed(events, f"-c{i}")]
    return sorted(copied, key=lambda e: (e.time, e.sessionid, e.sequence))


def as_bodies(events: Sequence[CloudEvent[Any]]) -> list[tuple[str, bytes]]:
    return [(e.sessionid, encode(e)) for e in events]


async def produce(bootstrap: str, topic: str, bodies: Sequence[tuple[str, bytes]]) -> None:
    """Send every (key, body), keyed by session as the gateway does; wait for the acks."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        max_request_size=PRODUCE_BYTES, linger_ms=5,
    )  # fmt: skip
    await producer.start()
    try:
        sent = [await producer.send(topic, value=body, key=key.encode()) for key, body in bodies]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return {tp.partition: int(o) for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def settings_for(topics: Topics, *, schema: str, database: str, store: AnalyticsStore,
                 bootstrap: str, dsn: str) -> StreamsSettings:  # fmt: skip
    return StreamsSettings(
        TURNLOG_KAFKA_BOOTSTRAP=bootstrap, TURNLOG_TOPIC_PREFIX=topics.prefix,
        TURNLOG_POSTGRES_DSN=dsn, TURNLOG_POSTGRES_SCHEMA=schema,
        TURNLOG_CLICKHOUSE_URL=store.url, TURNLOG_CLICKHOUSE_DATABASE=database,
        TURNLOG_STREAMS_CONSUMER_GROUP=GROUP,
    )  # fmt: skip


@dataclass(frozen=True)
class LiveBatch:
    started: float
    ended: float
    records: int
    prepared_inserts: dict[str, int]
    """psycopg's prepared INSERT statements on the writer's connection after the batch:
    name -> how many times PostgreSQL has executed it (generic + custom plans)."""


@dataclass
class LiveProcessor:
    """The worker's processing in a thread of its own: from offset 0 of the events topic,
    `batch` records at a time, `pause` seconds between batches; `finish(ends)` lets it
    stop once it has applied everything below `ends`."""

    settings: StreamsSettings
    store: AnalyticsStore
    batch: int = 50
    pause: float = 0.0
    batches: list[LiveBatch] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        dsn = self.settings.postgres_dsn.get_secret_value()
        self.conn = psycopg.connect(dsn, autocommit=True)
        schema = self.settings.postgres_schema
        self.lock = psycopg.connect(dsn, autocommit=True)
        self.processor = ReplayProcessor(
            PostgresProjection(self.conn, schema=schema, consumer=PG_CONSUMER),
            ClickHouseProjection(self.store, database=self.settings.clickhouse_database),
            lock=self.lock,
        )  # fmt: skip
        self._ends: dict[int, int] | None = None
        self._thread = threading.Thread(target=self._run, name="live-processor", daemon=True)

    def start(self) -> LiveProcessor:
        self._thread.start()
        return self

    def finish(self, ends: dict[int, int], timeout: float = 120) -> None:
        self._ends = ends
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the live processor did not finish")
        self.processor.close()
        self.lock.close()
        self.conn.close()
        if self.error is not None:
            raise self.error

    def wait_for_batches(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.batches) < count:
            if self.error is not None or time.monotonic() > deadline:
                raise TimeoutError(f"the live processor made {len(self.batches)} batches")
            time.sleep(0.02)

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as error:
            self.error = error

    async def _consume(self) -> None:
        topic = self.settings.events_topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(topic, p)
                for p in await topic_partitions(self.settings.kafka_bootstrap, topic)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not await self._done(consumer, tps):
                fetched = await consumer.getmany(timeout_ms=100, max_records=self.batch)
                records = [raw_record(m) for messages in fetched.values() for m in messages]
                if records:
                    self._process(records)
                    await asyncio.sleep(self.pause)
        finally:
            await consumer.stop()

    async def _done(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
        ends = self._ends
        if ends is None:
            return False
        positions = [await consumer.position(tp) for tp in tps]
        return all(at >= ends.get(tp.partition, 0) for tp, at in zip(tps, positions, strict=True))

    def _process(self, records: list[Any]) -> None:
        started = time.time()
        self.processor.process(records)
        ended = time.time()
        prepared = self.conn.execute(
            "SELECT name, generic_plans + custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE 'INSERT INTO%'"
        ).fetchall()
        executions = {str(name): int(count) for name, count in prepared}
        self.batches.append(LiveBatch(started, ended, len(records), executions))


@dataclass(frozen=True)
class Scratch:
    """A PostgreSQL schema and ClickHouse database made by a test, dropped by `drop`."""

    dsn: str
    store: AnalyticsStore
    schemas: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    def new(self) -> tuple[str, str]:
        schema, database = unique("test_ref_"), unique("test_ref_")
        migrate_postgres(self.dsn, schema=schema)
        migrate_clickhouse(self.store, database=database)
        self.schemas.append(schema)
        self.databases.append(database)
        return schema, database

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
        for database in self.databases:
            self.store.command(f"DROP DATABASE IF EXISTS `{database}`")


def schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return bool(row and row[0])


def database_exists(store: AnalyticsStore, database: str) -> bool:
    rows = store.query("SELECT count() FROM system.databases WHERE name = {d:String}",
                       parameters={"d": database})  # fmt: skip
    return bool(rows and int(rows[0][0]))
