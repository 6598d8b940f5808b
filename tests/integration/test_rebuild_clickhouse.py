"""ClickHouse specifics of the rebuild: the table exchange keeps every database's
materialized views feeding that database's tables (checked on chDB), and a chDB folder
another process owns is refused, naming the owner."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unique
from tests.integration.test_rebuild_support import schema_exists
from tests.unit.test_ch_sessions import START, as_records, recorded_events
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.queries import checksum
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.streams.rebuild import main
from turnlog.streams.rebuild.plan import Names
from turnlog.streams.rebuild.targets import exchange_tables, plain_tables

pytestmark = pytest.mark.integration


@pytest.fixture
def names(analytics_store: AnalyticsStore) -> Iterator[Names]:
    made = Names("unused", unique("test_"), "20250301120000")
    databases = [made.database, made.rebuilt_database, made.old_database, unique("test_ref_"),
                 unique("test_ref_")]  # fmt: skip
    for database in databases:
        migrate_clickhouse(analytics_store, database=database)
    yield made
    for database in databases:
        analytics_store.command(f"DROP DATABASE IF EXISTS `{database}`")


def write(store: AnalyticsStore, database: str, records: list) -> None:  # type: ignore[type-arg]
    ClickHouseProjection(store, database=database).write_batch(records)


def reference(store: AnalyticsStore, records: list) -> dict[str, str]:  # type: ignore[type-arg]
    database = unique("test_ref_")
    migrate_clickhouse(store, database=database)
    try:
        write(store, database, records)
        return checksum(store, database)
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{database}`")


def test_the_exchange_keeps_each_databases_views_on_its_own_tables(
    analytics_store: AnalyticsStore, names: Names
) -> None:
    """Live has a little, the rebuild has more; after the exchange, writes into the live
    database reach its rollups through its views (on the rebuilt tables), and the old
    database's rollups stay as they were."""
    records = as_records(recorded_events(START))
    first, rest = records[: len(records) // 2], records[len(records) // 2 :]
    write(analytics_store, names.database, first[:10])
    write(analytics_store, names.rebuilt_database, first)

    moved = exchange_tables(analytics_store, names)
    write(analytics_store, names.database, rest)

    assert "events" in moved
    assert "turns_1m" in moved  # a rollup table; latency_1m is a view over the base tables
    assert "positions" in moved
    assert checksum(analytics_store, names.database) == reference(analytics_store, records)
    assert checksum(analytics_store, names.old_database) == reference(analytics_store, first[:10])
    assert checksum(analytics_store, names.rebuilt_database) == reference(analytics_store, [])
    views = analytics_store.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} "
        "AND engine = 'MaterializedView'", parameters={"db": names.database},
    )  # fmt: skip
    assert int(views[0][0]) == 9  # 6 from the ingest table, 3 rollups
    assert plain_tables(analytics_store, names.database) == moved


@pytest.fixture
def owned_folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A chDB folder owned by another process for the test's duration."""
    folder = tmp_path / "owned-chdb"
    command = [sys.executable, "-c",
               "import sys; from projections.clickhouse.store import connect; "
               "connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
               f"chdb://{folder}"]  # fmt: skip
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True) as owner:
        assert owner.stdin is not None
        assert owner.stdout is not None
        try:
            assert owner.stdout.readline().strip() == "ready"
            yield folder, owner.pid
        finally:
            owner.stdin.close()
            owner.wait(timeout=30)


@pytest.mark.parametrize("target", ["clickhouse", "both"])
def test_a_chdb_folder_owned_by_another_process_is_refused_naming_the_owner(
    target: str, owned_folder: tuple[Path, int], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], postgres_dsn: str,
) -> None:  # fmt: skip
    folder, pid = owned_folder
    schema = unique("test_")
    monkeypatch.setenv("TURNLOG_CLICKHOUSE_URL", f"chdb://{folder}")
    monkeypatch.setenv("TURNLOG_POSTGRES_DSN", postgres_dsn)
    monkeypatch.setenv("TURNLOG_POSTGRES_SCHEMA", schema)

    assert main(["--target", target]) == 3

    error = " ".join(capsys.readouterr().err.split())  # the console wraps long paths
    assert f"owned by pid {pid}" in error
    assert "stop the streams worker" in error
    assert "ClickHouse server" in error
    assert "--target postgres" in error
    assert not schema_exists(postgres_dsn, f"{schema}_rebuild_%")


def test_invalid_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "mysql"]) == 2
    assert "mysql" in capsys.readouterr().err
