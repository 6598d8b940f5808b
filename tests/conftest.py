"""Shared fixtures: the real local stack, and per-test topics, schemas and databases.

Integration tests use the running local stack, or start it when it is not running (and
stop it again at the end). A stack that cannot start fails the run: nothing skips.
Each test gets its own topic names, PostgreSQL schema and ClickHouse database, so tests
never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests import stream_guard
from turnlog.infra.stack.config import StackSettings, load_settings
from turnlog.infra.stack.stack import Stack
from turnlog.infra.stack.topics import ensure_topics
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.store import (
    AnalyticsStore,
    ChdbStore,
    connect,
    exit_past_chdb_teardown,
)
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.schemas.topics import TopicSpec, topic_specs

stream_guard.install()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(stack_settings: StackSettings) -> Iterator[Stack]:
    """The real Kafka + PostgreSQL (+ chDB DDL), started here if it is not running."""
    stack = Stack(stack_settings)
    started_here = not stack.is_up()
    stack.up(report=lambda line: None)  # idempotent: starts what is down, provisions
    yield stack
    if started_here and os.environ.get("TURNLOG_KEEP_STACK") != "1":
        stack.down(report=lambda line: None)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack) -> str:
    return stack.settings.kafka_bootstrap


@pytest.fixture(scope="session")
def postgres_dsn(stack: Stack) -> str:
    return stack.settings.postgres_dsn


@dataclass(frozen=True)
class Topics:
    """This test's own copies of the platform's topics."""

    prefix: str
    specs: tuple[TopicSpec, ...]

    def name(self, base: str) -> str:
        return self.prefix + base


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    from aiokafka.admin import AIOKafkaAdminClient

    prefix = unique("test-") + "."
    specs = tuple(topic_specs(prefix))
    asyncio.run(ensure_topics(kafka_bootstrap, specs))
    yield Topics(prefix, specs)

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([s.name for s in specs])
        finally:
            await admin.close()

    asyncio.run(delete())


@dataclass(frozen=True)
class PgSchema:
    dsn: str
    name: str

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.name)))
        return conn


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[PgSchema]:
    """A fresh PostgreSQL schema with every migration applied."""
    name = unique("test_")
    migrate_postgres(postgres_dsn, schema=name)
    yield PgSchema(postgres_dsn, name)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def analytics_store(tmp_path_factory: pytest.TempPathFactory) -> AnalyticsStore:
    """The embedded engine, in a folder this test process owns (one per process)."""
    path: Path = tmp_path_factory.mktemp("chdb")
    return connect(f"chdb://{path}")


@pytest.fixture
def ch_database(analytics_store: AnalyticsStore) -> Iterator[str]:
    """A fresh ClickHouse database with every migration applied."""
    name = unique("test_")
    migrate_clickhouse(analytics_store, database=name)
    yield name
    analytics_store.command(f"DROP DATABASE IF EXISTS `{name}`")


def zombie_children() -> list[int]:
    """This process's children in state Z: exited and never waited for."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every child a test started is reaped by now (the fixtures have stopped them): a
    defunct one fails the run, named."""
    zombies = zombie_children()
    if zombies:
        names = [_command_name(pid) for pid in zombies]
        session.config.get_terminal_writer().line(
            f"children left defunct by the tests: {dict(zip(zombies, names, strict=True))}",
            red=True,
        )
        if exitstatus == 0:
            session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End a run that started chDB with pytest's own status, before interpreter teardown.

    chDB's engine threads outlive every connection, and the interpreter's exit may destroy
    the engine while they run: "The ShutdownTablesThreadPool is not initialized", then
    SIGSEGV, after every test has passed (chdb-core 26.9). Everything pytest reports has
    been written by now (this is the last hook), so only the crash is skipped."""
    if not ChdbStore.opened_in_this_process() or not _exit_status:
        return
    exit_past_chdb_teardown(_exit_status[-1])


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
