"""ClickHouse migrations: idempotent DDL statements, then a record of the version.

ClickHouse has no transactional DDL, so every statement is written to be re-runnable
(``IF NOT EXISTS``); a crash between a statement and its record repeats harmlessly.
"""

from __future__ import annotations

from pathlib import Path

from turnlog.projections.clickhouse.sql import quote_name
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.migrations import Migration, load_migrations, migrate

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def quote_database(name: str) -> str:
    """A database name as a quoted identifier; only plain names are accepted."""
    return quote_name(name)


class ClickHouseMigrations:
    def __init__(self, store: AnalyticsStore, database: str) -> None:
        self.store = store
        self.db = quote_database(database)

    def applied(self) -> dict[int, str]:
        self.store.command(f"CREATE DATABASE IF NOT EXISTS {self.db}")
        self.store.command(
            f"""CREATE TABLE IF NOT EXISTS {self.db}.schema_migrations
                (version UInt32, name String, checksum String,
                 applied_at DateTime64(6, 'UTC') DEFAULT now64(6))
                ENGINE = ReplacingMergeTree ORDER BY version"""
        )
        rows = self.store.query(
            f"SELECT version, checksum FROM {self.db}.schema_migrations FINAL"
        )
        return {int(version): str(checksum) for version, checksum in rows}

    def apply(self, migration: Migration) -> bool:
        # One DDL owner per store (chDB: one process; a server: the launcher), so no race.
        for statement in migration.statements():
            self.store.command(statement.replace("{db}", self.db))
        self.store.command(
            f"INSERT INTO {self.db}.schema_migrations (version, name, checksum) VALUES "
            f"({migration.version}, '{migration.name}', '{migration.checksum}')"
        )
        return True


def migrate_clickhouse(store: AnalyticsStore, *, database: str) -> list[Migration]:
    """Bring ``database`` up to date; return what was applied now."""
    return migrate(ClickHouseMigrations(store, database), load_migrations(MIGRATIONS_DIR))


def apply_retention(store: AnalyticsStore, database: str, *, days: int) -> list[str]:
    """A TTL of `days` on the event time of every table of `database` that has one (a
    `time` column); returns those tables. Idempotent: setting the same TTL again is a
    no-op for ClickHouse."""
    rows = store.query(
        "SELECT c.table FROM system.columns c JOIN system.tables t "
        "ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = {db:String} AND c.name = 'time' "
        "AND t.engine LIKE '%MergeTree' ORDER BY c.table",
        parameters={"db": database},
    )
    tables = [str(name) for (name,) in rows]
    for table in tables:
        store.command(
            f"ALTER TABLE {quote_database(database)}.{quote_name(table)} "
            f"MODIFY TTL toDateTime(time) + INTERVAL {int(days)} DAY"
        )
    return tables
