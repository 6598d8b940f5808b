"""The server path, without a server: ``ServerStore`` drives clickhouse-connect, here built
on clickhouse-connect's in-process chDB client, so every call the server path makes
(command, query with parameters and settings, raw_insert with the shared payload) runs
against a real engine and must give what ``ChdbStore`` gives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import clickhouse_connect
import pytest

from tests.conftest import unique
from tests.unit.test_ch_sessions import START, as_records, recorded_events
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.analyst import (
    QueryResult,
    QueryTimeoutError,
    ReadOnlyViolationError,
    run_readonly_query,
)
from turnlog.projections.clickhouse.migrate import MIGRATIONS_DIR, migrate_clickhouse
from turnlog.projections.clickhouse.store import AnalyticsStore, ChdbStore, ServerStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.migrations import load_migrations

pytestmark = pytest.mark.integration


@pytest.fixture
def server_store(analytics_store: AnalyticsStore) -> Iterator[ServerStore]:
    assert isinstance(analytics_store, ChdbStore)
    client = clickhouse_connect.get_client(interface="chdb", path=str(analytics_store.path))
    store = ServerStore("http://in-process:8123", client=client)
    yield store
    store.close()


@pytest.fixture
def server_database(server_store: ServerStore) -> Iterator[str]:
    name = unique("test_")
    assert len(migrate_clickhouse(server_store, database=name)) == len(
        load_migrations(MIGRATIONS_DIR)
    )
    yield name
    server_store.command(f"DROP DATABASE IF EXISTS `{name}`")


def test_both_paths_build_the_same_projection(
    analytics_store: AnalyticsStore, ch_database: str,
    server_store: ServerStore, server_database: str,
) -> None:  # fmt: skip
    records = as_records(recorded_events(START))
    assert ClickHouseProjection(analytics_store, database=ch_database).write_batch(records) == 41
    through_server = ClickHouseProjection(server_store, database=server_database)
    assert through_server.write_batch(records) == 41
    assert through_server.write_batch(records) == 0
    assert through_server.positions() == {("turnlog.events", 0): 41}

    assert queries.checksum(server_store, server_database) == queries.checksum(
        analytics_store, ch_database
    )
    window = {"start": START, "end": START + timedelta(minutes=3)}
    for query in (queries.latency_percentiles, queries.usage_by_model, queries.overview):
        assert query(server_store, server_database, **window) == query(
            analytics_store, ch_database, **window
        )
    assert queries.session_events(server_store, server_database, "sess-a", after=5) == (
        queries.session_events(analytics_store, ch_database, "sess-a", after=5)
    )


def test_a_retry_through_the_server_path_adds_nothing(
    server_store: ServerStore, server_database: str
) -> None:
    records = as_records(recorded_events(START))
    ClickHouseProjection(server_store, database=server_database).write_batch(records)
    digests = queries.checksum(server_store, server_database)
    server_store.command(f"TRUNCATE TABLE `{server_database}`.positions")
    ClickHouseProjection(server_store, database=server_database).write_batch(records)
    assert queries.checksum(server_store, server_database) == digests


def readonly_through_clickhouse_connect(
    store: AnalyticsStore, sql: str, *, timeout_s: float = 10, max_rows: int = 10_000
) -> QueryResult:
    """One query per client: the in-process client keeps per-call settings in its chDB
    session, so after ``readonly = 1`` it can change none (a server takes them per
    request)."""
    assert isinstance(store, ChdbStore)
    client = clickhouse_connect.get_client(interface="chdb", path=str(store.path))
    try:
        server = ServerStore("http://in-process:8123", client=client)
        return run_readonly_query(server, sql, timeout_s=timeout_s, max_rows=max_rows)
    finally:
        client.close()


def test_the_guards_hold_through_clickhouse_connect(
    analytics_store: AnalyticsStore, server_database: str
) -> None:
    table = f"`{server_database}`.events"
    run = readonly_through_clickhouse_connect
    assert run(analytics_store, f"SELECT count() FROM {table}").rows == [(0,)]
    with pytest.raises(ReadOnlyViolationError):
        run(analytics_store, f"DROP TABLE {table}")
    with pytest.raises(QueryTimeoutError):
        run(analytics_store, "SELECT count() FROM system.numbers", timeout_s=0.3)
    cut = run(analytics_store, "SELECT number FROM numbers(50)", max_rows=7)
    assert (len(cut.rows), cut.truncated) == (7, True)
