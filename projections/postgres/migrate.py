"""PostgreSQL migrations: each file in one transaction with its record, under a lock."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from turnlog.projections.migrations import Migration, load_migrations, migrate

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x7475726E6C6F67  # "turnlog": one migrator at a time per database


class PostgresMigrations:
    """Applies migrations into one schema (tests use one schema each)."""

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def _enter_schema(self, cur: psycopg.Cursor[tuple[object, ...]]) -> None:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
        cur.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )

    def applied(self) -> dict[int, str]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            self._enter_schema(cur)
            cur.execute("SELECT version, checksum FROM schema_migrations")
            return {int(v): str(c) for v, c in cur.fetchall()}  # type: ignore[call-overload]

    def apply(self, migration: Migration) -> bool:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            self._enter_schema(cur)
            cur.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            )
            if cur.fetchone():  # a concurrent migrator got here first
                return False
            cur.execute(migration.sql.encode())  # one script: PL/pgSQL bodies may hold ';'
            cur.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        return True


def migrate_postgres(dsn: str, *, schema: str = "public") -> list[Migration]:
    """Bring ``schema`` of the database at ``dsn`` up to date; return what was applied."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return migrate(PostgresMigrations(conn, schema), load_migrations(MIGRATIONS_DIR))
