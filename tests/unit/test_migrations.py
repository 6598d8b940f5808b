from __future__ import annotations

from pathlib import Path

import pytest

from turnlog.projections.clickhouse.migrate import MIGRATIONS_DIR as CH_DIR
from turnlog.projections.clickhouse.migrate import quote_database
from turnlog.projections.migrations import Migration, MigrationError, load_migrations, migrate
from turnlog.projections.postgres.migrate import MIGRATIONS_DIR as PG_DIR

pytestmark = pytest.mark.unit


class InMemoryTarget:
    """Implements MigrationTarget by remembering what it applied."""

    def __init__(self) -> None:
        self.records: dict[int, str] = {}
        self.executed: list[str] = []

    def applied(self) -> dict[int, str]:
        return dict(self.records)

    def apply(self, migration: Migration) -> bool:
        self.executed += migration.statements()
        self.records[migration.version] = migration.checksum
        return True


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_applies_in_version_order_then_nothing(tmp_path: Path) -> None:
    write(tmp_path, "0002_b.sql", "CREATE TABLE b (x int);\n")
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);\nCREATE INDEX i ON a (x);\n")
    target = InMemoryTarget()

    first = migrate(target, load_migrations(tmp_path))
    second = migrate(target, load_migrations(tmp_path))

    assert [m.version for m in first] == [1, 2]
    assert target.executed == [
        "CREATE TABLE a (x int)",
        "CREATE INDEX i ON a (x)",
        "CREATE TABLE b (x int)",
    ]
    assert second == []


def test_edited_applied_migration_is_refused_by_name(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);\n")
    target = InMemoryTarget()
    migrate(target, load_migrations(tmp_path))
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (x bigint);\n")

    with pytest.raises(MigrationError, match="0001_a changed after it was applied"):
        migrate(target, load_migrations(tmp_path))


def test_history_newer_than_code_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "SELECT 1;\n")
    target = InMemoryTarget()
    target.records[7] = "abc"

    with pytest.raises(MigrationError, match="migration 0007 applied, which no file provides"):
        migrate(target, load_migrations(tmp_path))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_a.sql": "SELECT 1;"}, "named NNNN_lower_snake.sql"),
        ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}, "version 0001 is used twice"),
    ],
)
def test_bad_folders_are_named(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_statement_without_terminator_is_refused() -> None:
    migration = Migration(3, "open", "CREATE TABLE a (x int);\nCREATE TABLE b (x int)\n")
    with pytest.raises(MigrationError, match="0003_open: the last statement has no ';'"):
        migration.statements()


@pytest.mark.parametrize("folder", [PG_DIR, CH_DIR])
def test_shipped_migrations_load_and_split(folder: Path) -> None:
    migrations = load_migrations(folder)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.statements() for m in migrations)


def test_clickhouse_database_names_are_checked() -> None:
    assert quote_database("turnlog_1") == "`turnlog_1`"
    with pytest.raises(ValueError, match="must match"):
        quote_database("x`; DROP DATABASE y")
