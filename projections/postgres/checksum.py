"""An order-independent digest of each read model, to compare a live projection with one
rebuilt from offset 0.

Each row is rendered as text (columns in name order; UTC, ISO dates, shortest exact
floats, so the rendering does not depend on session settings), hashed with md5, and the
hashes are summed as numbers: no sort, one pass, and any row order gives the same sum.
The ledger and the consumer offsets are not read models and are left out: a rebuild
consumes under its own name and may see the log in other batches.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from turnlog.projections.postgres.tables import TABLES

APPLICATION_COLUMNS = frozenset({"updated_at", "applied_at"})
"""Columns that record when the projector wrote, not what the log says: never digested."""


def checksum(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """Table name -> `"{row count}:{digest}"` for every read model of `schema`."""
    digests: dict[str, str] = {}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL TimeZone TO 'UTC'")
        cur.execute("SET LOCAL DateStyle TO 'ISO, YMD'")
        cur.execute("SET LOCAL IntervalStyle TO 'iso_8601'")
        cur.execute("SET LOCAL extra_float_digits TO 1")
        for table in TABLES:
            cur.execute(_digest_query(cur, schema, table))
            row = cur.fetchone()
            count, high, low = row if row is not None else (0, 0, 0)
            digest = hashlib.sha256(f"{count}:{high}:{low}".encode()).hexdigest()[:32]
            digests[table] = f"{count}:{digest}"
    return digests


def _columns(cur: psycopg.Cursor[Any], schema: str, table: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY column_name",
        (schema, table),
    )
    names = [str(name) for (name,) in cur.fetchall()]
    if not names:
        raise LookupError(f"no table {schema}.{table}: is the schema migrated?")
    return [n for n in names if n not in APPLICATION_COLUMNS]


def _digest_query(cur: psycopg.Cursor[Any], schema: str, table: str) -> sql.Composed:
    row = sql.SQL("ROW({})::text").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in _columns(cur, schema, table))
    )
    return sql.SQL(
        "SELECT count(*), "
        "coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0), "
        "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0) "
        "FROM (SELECT md5({row}) AS h FROM {table}) AS rows"
    ).format(row=row, table=sql.Identifier(schema, table))
