"""What the console and live-viewer benchmarks share: a real API process on its own
topics and PostgreSQL schema (removed afterwards, also on Ctrl-C), synthetic sessions of
an exact length, and writing them to the log and the read models.

The API is `python -m turnlog.api` (one uvicorn worker, uvloop, httptools) with its
production settings, except for a throwaway ClickHouse URL (nothing here reads
analytics) and the test-sized topic prefix and schema.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from psycopg import sql

from bench.api_bench import Server
from bench.streams_mix import Session
from turnlog.api.keys import create_key
from turnlog.infra.stack.topics import ensure_topics
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import CloudEvent, MetricsCollected, VadMetrics, encode
from turnlog.schemas.topics import EVENTS_TOPIC, topic_specs

DSN: Final = os.environ.get(
    "TURNLOG_POSTGRES_DSN", "postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"
)
BOOTSTRAP: Final = os.environ.get("TURNLOG_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
LIVEKIT_SECRET: Final = "bench-secret-0123456789abcdef0123456789"
PROJECTION_BATCH: Final = 500


@dataclass(frozen=True)
class Platform:
    """A running API on this run's own topics and schema."""

    api: Server
    key: str
    """An API key with every scope."""
    schema: str
    topic: str
    """The events topic (prefixed)."""

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def pid(self) -> int:
        return self.api.process.pid


@contextmanager
def running_api(name: str, *, env: dict[str, str] | None = None) -> Iterator[Platform]:
    """An API process on a fresh prefix and schema; everything made is removed after."""
    run_id = f"{name}_{uuid.uuid4().hex[:8]}"
    prefix, schema = f"{run_id.replace('_', '-')}.", run_id
    specs = topic_specs(prefix)
    api: Server | None = None
    try:
        migrate_postgres(DSN, schema=schema)
        asyncio.run(ensure_topics(BOOTSTRAP, specs))
        key = create_key(DSN, name=name, scopes=["tokens", "read", "admin"], schema=schema)
        api = Server(name, ["-m", "turnlog.api"], {
            "LIVEKIT_API_KEY": "devkey",
            "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
            "TURNLOG_POSTGRES_DSN": DSN,
            "TURNLOG_POSTGRES_SCHEMA": schema,
            "TURNLOG_TOPIC_PREFIX": prefix,
            "TURNLOG_KAFKA_BOOTSTRAP": BOOTSTRAP,
            "TURNLOG_CLICKHOUSE_URL": "http://127.0.0.1:9",
            "TURNLOG_CLICKHOUSE_DATABASE": "bench_unused",
            **(env or {}),
        }, "/healthz")  # fmt: skip
        yield Platform(api, key, schema, prefix + EVENTS_TOPIC)
    finally:
        if api is not None:
            api.stop()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        asyncio.run(_delete_topics([s.name for s in specs]))


async def _delete_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def synthetic_session(
    session_id: str, *, events: int, seed: int, start: datetime
) -> tuple[list[CloudEvent[Any]], int]:
    """Exactly `events` events of one session (`bench.streams_mix`: interims, metrics,
    tools, usage; opening and closing included), and its number of turns. Whole turns
    while they fit, then VAD metrics (no turn) to pad, then the caller leaves and
    session.closed."""
    session = Session(session_id, random.Random(seed))
    out: list[CloudEvent[Any]] = []
    at = start

    def emit(delay: float, payload: Any) -> None:
        nonlocal at
        at += timedelta(seconds=delay)
        out.append(session.event(payload, at))

    for delay, payload in session.opening(start):
        emit(delay, payload)
    closing = len(session.closing())
    while True:
        steps = session.turn_steps(at)
        if len(out) + len(steps) + closing > events:
            session.turn -= 1
            break
        for delay, payload in steps:
            emit(delay, payload)
    while len(out) + closing < events:
        emit(0.5, MetricsCollected(metrics=VadMetrics(
            timestamp=at, label="livekit.plugins.silero.vad.VAD", idle_time=0.5,
            inference_duration_total=0.02, inference_count=31)))  # fmt: skip
    for delay, payload in session.closing():
        emit(delay, payload)
    return out, session.turn


@dataclass(frozen=True)
class LiveSession:
    """One session in three parts: what exists before the viewers come, what is sent
    while they watch, and its end."""

    opening: list[CloudEvent[Any]]
    live: list[CloudEvent[Any]]
    closing: list[CloudEvent[Any]]


def live_session(session_id: str, *, events: int, seed: int) -> LiveSession:
    """A session whose `live` part is exactly `events` events of whole turns (the last
    one cut), stamped now."""
    session = Session(session_id, random.Random(seed))
    now = datetime.now(UTC)
    opening = [session.event(payload, now) for _, payload in session.opening(now)]
    payloads: list[Any] = []
    while len(payloads) < events:
        payloads += [payload for _, payload in session.turn_steps(now)]
    live = [session.event(payload, now) for payload in payloads[:events]]
    closing = [session.event(payload, now) for _, payload in session.closing()]
    return LiveSession(opening, live, closing)


@dataclass(frozen=True, slots=True)
class Written:
    partition: int
    offset: int


async def produce(topic: str, events: Sequence[CloudEvent[Any]]) -> list[Written]:
    """Write `events` keyed by session id (the gateway's way) and wait for all."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, encode(e), key=e.sessionid.encode()) for e in events]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [Written(m.partition, m.offset) for m in metadata]


def project(
    schema: str, topic: str, events: Sequence[CloudEvent[Any]], written: Sequence[Written]
) -> None:
    """Apply `events` (at their log positions) to the read models, in batches."""
    records = [
        SourceRecord(topic, w.partition, w.offset, e) for e, w in zip(events, written, strict=True)
    ]
    projection = PostgresProjection(DSN, schema=schema)
    try:
        for start in range(0, len(records), PROJECTION_BATCH):
            projection.apply_batch(records[start : start + PROJECTION_BATCH])
    finally:
        projection.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")
