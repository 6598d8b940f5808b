"""The projections a rebuild reads, creates, swaps and drops.

The swaps assume the caller holds the exclusive projection lock (`streams.locks`).
PostgreSQL: one transaction of two schema renames. ClickHouse: per table, `EXCHANGE
TABLES` between the live and the rebuilt database, then between the rebuilt and a fresh
`<db>_old_<stamp>`, so each database ends with the tables its views expect: views are
not moved, and resolve their source and target tables by name at insert time
(tests/integration/test_rebuild_clickhouse.py checks it on chDB).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql

from turnlog.projections.clickhouse.migrate import quote_database
from turnlog.projections.clickhouse.query_endpoint import chdb_folder
from turnlog.projections.clickhouse.store import (
    AnalyticsStore,
    AnalyticsStoreError,
    StoreLockedError,
    chdb_owner,
    connect,
)
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.errors import ProjectionWriteError
from turnlog.projections.postgres.tables import DURABLE_TABLES
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.streams.config import StreamsSettings, redact_url
from turnlog.streams.rebuild.log import Offsets
from turnlog.streams.rebuild.plan import Names, RebuildError, RebuildRefusedError

CHDB_FIX = (
    "one process owns a chDB folder, and the streams worker writes through it: stop the "
    "streams worker and run the rebuild again (start the worker after it), or use a "
    "ClickHouse server (TURNLOG_CLICKHOUSE_URL=http://host:8123), or rebuild PostgreSQL "
    "alone online (--target postgres)"
)


def open_store(settings: StreamsSettings) -> AnalyticsStore:
    """The live ClickHouse store; a chDB folder only when no other process owns it."""
    url = settings.analytics_url
    if url.startswith("chdb:"):
        folder = chdb_folder(url)
        owner = chdb_owner(folder)
        if owner is not None and owner != os.getpid():
            raise RebuildRefusedError(
                f"the chDB folder {folder} is owned by pid {owner} (the streams worker?); "
                + CHDB_FIX
            )
    try:
        return connect(url)
    except StoreLockedError as error:
        raise RebuildRefusedError(f"{error}; {CHDB_FIX}") from error
    except AnalyticsStoreError as error:
        raise RebuildRefusedError(f"ClickHouse {redact_url(url)}: {error}") from error


def postgres_offsets(dsn: str, *, schema: str, consumer: str, topic: str) -> Offsets:
    """What `consumer` has applied to `schema` (its `consumer_offsets`)."""
    live = PostgresProjection(dsn, schema=schema, consumer=consumer)
    try:
        return live.committed_offsets(topic)
    except ProjectionWriteError as error:
        raise RebuildRefusedError(
            f"the live schema {schema!r} cannot be read ({error}); is it migrated?"
        ) from error
    finally:
        live.close()


def clickhouse_positions(store: AnalyticsStore, *, database: str, topic: str) -> Offsets:
    """What the ClickHouse writer has applied to `database` (its `positions`)."""
    try:
        positions = ClickHouseProjection(store, database=database).positions()
    except AnalyticsStoreError as error:
        raise RebuildRefusedError(
            f"the live ClickHouse database {database!r} cannot be read ({error})"
        ) from error
    return {p: o for (t, p), o in positions.items() if t == topic}


def swap_postgres(conn: psycopg.Connection[Any], names: Names) -> None:
    """`<schema>` -> `<schema>_old_<stamp>`, the rebuild -> `<schema>`, in one transaction."""
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '10s'")
        # the tables that are not read models (API keys, the key store, the erasures)
        # move into the rebuild: they are the only copy of what they hold
        drop = sql.SQL("DROP TABLE IF EXISTS {} CASCADE")
        move = sql.SQL("ALTER TABLE IF EXISTS {} SET SCHEMA {}")
        for table in DURABLE_TABLES:
            conn.execute(drop.format(sql.Identifier(names.rebuilt_schema, table)))
        for table in DURABLE_TABLES:
            conn.execute(move.format(sql.Identifier(names.schema, table),
                                     sql.Identifier(names.rebuilt_schema)))  # fmt: skip
        conn.execute(_rename(names.schema, names.old_schema))
        conn.execute(_rename(names.rebuilt_schema, names.schema))


def _rename(schema: str, to: str) -> sql.Composed:
    return sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(schema),
                                                          sql.Identifier(to))  # fmt: skip


def plain_tables(store: AnalyticsStore, database: str) -> list[str]:
    """The tables of `database` that hold data (not views)."""
    rows = store.query(
        "SELECT name FROM system.tables WHERE database = {db:String} "
        "AND engine NOT IN ('View', 'MaterializedView') ORDER BY name",
        parameters={"db": database},
    )
    return [str(name) for (name,) in rows]


def exchange_tables(store: AnalyticsStore, names: Names) -> list[str]:
    """Rebuilt tables into `<db>`, live ones into `<db>_old_<stamp>`; the rebuilt database
    is left with empty tables. Returns the tables moved."""
    live, rebuilt, old = names.database, names.rebuilt_database, names.old_database
    tables = {db: plain_tables(store, db) for db in (live, rebuilt, old)}
    if not tables[live] == tables[rebuilt] == tables[old]:
        raise RebuildError(
            f"ClickHouse databases {live}, {rebuilt} and {old} do not have the same tables "
            f"({tables}); nothing was exchanged"
        )
    q = {db: quote_database(db) for db in tables}
    done: list[str] = []
    try:
        for table in tables[live]:
            store.command(f"EXCHANGE TABLES {q[live]}.`{table}` AND {q[rebuilt]}.`{table}`")
            store.command(f"EXCHANGE TABLES {q[rebuilt]}.`{table}` AND {q[old]}.`{table}`")
            done.append(table)
    except AnalyticsStoreError as error:
        raise RebuildError(
            f"the ClickHouse exchange stopped midway ({error}): {live} has the rebuilt "
            f"tables {done} and its own others; finish it with EXCHANGE TABLES by hand "
            f"({rebuilt} and {old} were kept)"
        ) from error
    return done


def drop_schema(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def drop_database(store: AnalyticsStore, name: str) -> None:
    store.command(f"DROP DATABASE IF EXISTS {quote_database(name)}")
