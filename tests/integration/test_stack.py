"""The local stack, provisioned: topics, PostgreSQL migrations, ClickHouse DDL."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.conftest import PgSchema, Topics, unique
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.kafka import Kafka
from turnlog.infra.stack.services import NAME_WIDTH
from turnlog.infra.stack.stack import Stack
from turnlog.infra.stack.topics import ensure_topics, read_topics, wait_for_configs
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.store import AnalyticsStore, ChdbStore
from turnlog.projections.migrations import load_migrations
from turnlog.projections.postgres.migrate import MIGRATIONS_DIR as PG_MIGRATIONS
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.schemas.topics import topic_specs

pytestmark = pytest.mark.integration


def test_topics_exist_with_declared_configs(kafka_bootstrap: str, topics: Topics) -> None:
    states = asyncio.run(read_topics(kafka_bootstrap, [s.name for s in topics.specs]))

    for spec in topics.specs:
        state = states[spec.name]
        assert state.partitions == spec.partitions
        assert state.replication_factor == spec.replication_factor
        for key, value in spec.configs.items():
            assert state.configs[key] == value, f"{spec.name}: {key}"


def test_ensure_topics_is_idempotent_and_repairs_drift(
    kafka_bootstrap: str, topics: Topics
) -> None:
    assert asyncio.run(ensure_topics(kafka_bootstrap, topics.specs)) == []
    events = topics.specs[0]

    async def drift() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        drifted = {**events.configs, "retention.ms": "1000"}
        try:
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, events.name, drifted)]
            )
            await wait_for_configs(admin, events.name, drifted)
        finally:
            await admin.close()

    asyncio.run(drift())
    changes = asyncio.run(ensure_topics(kafka_bootstrap, topics.specs))
    restored = asyncio.run(read_topics(kafka_bootstrap, [events.name]))[events.name]

    assert changes == [f"{events.name}: configs reset (retention.ms)"]
    assert restored.configs["retention.ms"] == events.configs["retention.ms"]


def test_platform_topics_follow_the_catalog(stack: Stack, kafka_bootstrap: str) -> None:
    specs = topic_specs(stack.settings.topic_prefix)
    states = asyncio.run(read_topics(kafka_bootstrap, [s.name for s in specs]))
    assert sorted(states) == sorted(s.name for s in specs)


def _schema_snapshot(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> object:
    columns = conn.execute(
        """SELECT table_name, column_name, data_type, is_nullable, column_default
           FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2""",
        (schema,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1", (schema,)
    ).fetchall()
    return columns, indexes


def test_postgres_migrations_twice_leave_the_same_schema(
    postgres_dsn: str, pg_schema: PgSchema
) -> None:
    with pg_schema.connect() as conn:
        before = _schema_snapshot(conn, pg_schema.name)
        applied = migrate_postgres(postgres_dsn, schema=pg_schema.name)
        after = _schema_snapshot(conn, pg_schema.name)
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()

    assert applied == []
    assert before == after
    tables = {row[0] for row in before[0]}  # type: ignore[index]
    assert {"sessions", "participants", "messages", "tool_calls", "transcriptions",
            "applied_events", "consumer_offsets", "schema_migrations"} <= tables
    assert versions == [(m.version,) for m in load_migrations(PG_MIGRATIONS)]


def test_concurrent_migrators_apply_once(postgres_dsn: str) -> None:
    schema = unique("test_")
    code = (
        "import sys; from projections.postgres.migrate import migrate_postgres; "
        "print(len(migrate_postgres(sys.argv[1], schema=sys.argv[2])))"
    )
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", code, postgres_dsn, schema],
                             stdout=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        counts = sorted(int(p.communicate(timeout=60)[0]) for p in procs)
        assert all(p.returncode == 0 for p in procs)
        with psycopg.connect(postgres_dsn) as conn:
            rows = conn.execute(
                f'SELECT count(*) FROM "{schema}".schema_migrations'
            ).fetchone()
        assert rows == (len(load_migrations(PG_MIGRATIONS)),)
        assert sum(counts) == len(load_migrations(PG_MIGRATIONS))
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_clickhouse_tables_exist(analytics_store: AnalyticsStore, ch_database: str) -> None:
    rows = analytics_store.query(
        f"SELECT name, engine FROM system.tables WHERE database = '{ch_database}' ORDER BY name"
    )
    assert ("events", "ReplacingMergeTree") in rows
    assert ("schema_migrations", "ReplacingMergeTree") in rows
    assert migrate_clickhouse(analytics_store, database=ch_database) == []


def test_clickhouse_events_collapse_a_replayed_event(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    row = (
        "('0190f2a4-7a1e-7000-8000-000000000001', 'turnlog.session.started.v1', 's1', 1, NULL,"
        " '2026-11-21 10:00:00.123456', '/agents/tutor/w1', 'room-1', '{}')"
    )
    insert = (f"INSERT INTO `{ch_database}`.events "
              "(event_id, type, session_id, sequence, turn_id, time, source, room, data) VALUES ")
    analytics_store.command(insert + row)
    analytics_store.command(insert + row)

    count = analytics_store.query(f"SELECT count() FROM `{ch_database}`.events FINAL")
    assert count == [(1,)]


def test_second_process_is_told_who_owns_the_chdb_folder(
    analytics_store: AnalyticsStore,
) -> None:
    assert isinstance(analytics_store, ChdbStore)
    result = subprocess.run(
        [sys.executable, "-m", "turnlog.projections.clickhouse", "migrate",
         "--url", analytics_store.url],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 3
    assert f"is open in another process (pid {os.getpid()}" in result.stderr


def test_clickhouse_ddl_is_skipped_while_a_projector_owns_the_folder(
    stack_settings: StackSettings, tmp_path: Path
) -> None:
    """`stack up` next to a running ClickHouse projector (here a process that holds the
    folder open as the projector does) reports the owner and does not fail."""
    settings = StackSettings(state_dir=tmp_path / "state", cache_dir=stack_settings.cache_dir)
    folder = settings.state_dir / "clickhouse"
    script = (
        "import sys, time\n"
        "from turnlog.projections.clickhouse.store import connect\n"
        f"connect({settings.analytics_url!r}); print('open', flush=True); time.sleep(120)"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                          text=True) as holder:  # fmt: skip
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "open"
            summary = Stack(settings).migrate_clickhouse()
            assert summary.startswith(
                f"owned by a running process (pid {holder.pid}); DDL skipped"
            )
        finally:
            holder.kill()
    # once the owner is gone, the same call applies the DDL
    assert "owned" not in Stack(settings).migrate_clickhouse()
    assert (folder / "metadata").is_dir()


def test_up_on_a_running_stack_changes_nothing(stack: Stack) -> None:
    lines: list[str] = []
    stack.up(report=lines.append)

    assert any(line.startswith("kafka") and "already running" in line for line in lines)
    assert any(line.startswith("postgres") and "already running" in line for line in lines)
    assert f"{'topics':<{NAME_WIDTH}} up to date" in lines
    assert f"{'postgres':<{NAME_WIDTH}} migrations: up to date" in lines
    assert any(line.startswith("livekit") and "already running" in line for line in lines)
    # a running streams worker owns the chDB folder and migrated it itself at its start
    assert any(
        line.startswith("clickhouse")
        and ("up to date" in line or "owned by a running process" in line)
        for line in lines
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_isolated_stack_lifecycle_cold_warm_and_idempotent(
    stack_settings: StackSettings,
) -> None:
    """A second stack of its own (state folder, ports): up, up, down, down, up, down."""
    state = stack_settings.state_dir / "test-stacks" / unique("s")
    settings = StackSettings(
        state_dir=state, cache_dir=stack_settings.cache_dir, kafka_heap="512m",
        kafka_port=_free_port(), kafka_controller_port=_free_port(),
        postgres_port=_free_port(), livekit_port=_free_port(), livekit_udp_port=_free_udp_port(),
    )
    stack = Stack(settings)
    lines: list[str] = []
    try:
        stack.up(report=lines.append)
        assert stack.is_up()
        assert all(s.running for s in stack.status())
        again: list[str] = []
        stack.up(report=again.append)
        assert sum("already running" in line for line in again) == 3  # Kafka, PG, LiveKit

        with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO sessions (session_id, room, started_at) VALUES ('kept', 'r', now())"
            )
        events_topic = topic_specs()[0].name
        asyncio.run(_produce(settings.kafka_bootstrap, events_topic, b"kept"))

        stack.down(report=lines.append)
        assert not any(s.running for s in stack.status()[:3])
        stopped_twice: list[str] = []
        stack.down(report=stopped_twice.append)
        assert all(line.endswith("not running") for line in stopped_twice)

        stack.up(report=lines.append)
        assert stack.is_up()
        with psycopg.connect(settings.postgres_dsn) as conn:
            kept = conn.execute("SELECT room FROM sessions WHERE session_id = 'kept'").fetchall()
        assert kept == [("r",)]
        assert asyncio.run(_consume_all(settings.kafka_bootstrap, events_topic)) == [b"kept"]
    finally:
        stack.down(report=lines.append)
        shutil.rmtree(state, ignore_errors=True)


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, topic: str) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
        return [r.value for records in batches.values() for r in records if r.value is not None]
    finally:
        await consumer.stop()


def test_storage_format_accepts_a_cluster_id_that_starts_with_a_dash(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random ids are URL-safe base64: one in 64 starts with '-' (regression)."""
    settings = StackSettings(state_dir=tmp_path, cache_dir=stack.settings.cache_dir)
    kafka = Kafka(settings)
    monkeypatch.setattr("turnlog.infra.stack.kafka._cluster_id", lambda: "-" + "A" * 21)

    kafka._format_storage(kafka._write_config())

    meta = (kafka.data_dir / "meta.properties").read_text()
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in meta
