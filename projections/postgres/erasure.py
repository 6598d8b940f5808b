"""Erasure in the read models: what an erased session keeps, for the live erasure and for
the projector, so a rebuild after an erasure equals the erased live state.

An erased session keeps its `sessions` row without the personal columns, and no row in
the personal tables. The erasure and the projector's batches take conflicting locks on
`erased_sessions` (ROW EXCLUSIVE for the erasure's insert, SHARE for a batch), so a batch
either commits before the erasure and is purged by it, or starts after and sees it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import psycopg
from psycopg import sql

from turnlog.projections.postgres.tables import (
    PERSONAL_SESSION_COLUMNS,
    PERSONAL_TABLES,
    SESSIONS,
    TABLES,
)

KEY_STORE_TABLES: Final = ("data_keys", "key_subjects")


def erased_among(cur: psycopg.Cursor[Any], schema: str, session_ids: Sequence[str]) -> set[str]:
    """Which of `session_ids` are erased; call inside the batch's transaction (it takes
    the SHARE lock that keeps an erasure out until the batch commits)."""
    cur.execute(
        sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(schema, "erased_sessions"))
    )
    cur.execute(
        sql.SQL("SELECT session_id FROM {} WHERE session_id = ANY(%s)").format(
            sql.Identifier(schema, "erased_sessions")
        ),
        (list(session_ids),),
    )
    return {str(row[0]) for row in cur.fetchall()}


def without_erased(
    params: Mapping[str, list[list[Any]]], erased: Collection[str]
) -> dict[str, list[list[Any]]]:
    """`upsert` parameters with the rows of `erased` sessions left out of the personal
    tables and their personal `sessions` columns cleared. Pure; the first column of every
    table is the session id."""
    if not erased:
        return dict(params)
    kept: dict[str, list[list[Any]]] = {}
    for name, columns in params.items():
        rows = [i for i, session_id in enumerate(columns[0]) if session_id in erased]
        if not rows:
            kept[name] = columns
        elif name in PERSONAL_TABLES:
            drop = set(rows)
            left = [[v for i, v in enumerate(values) if i not in drop] for values in columns]
            if left[0]:
                kept[name] = left
        else:
            kept[name] = _cleared(name, columns, set(rows))
    return kept


def _cleared(name: str, columns: list[list[Any]], rows: set[int]) -> list[list[Any]]:
    if TABLES[name] is not SESSIONS:
        return columns
    cleared = [list(values) for values in columns]
    for index, column in enumerate(SESSIONS.all_columns):
        if column.name in PERSONAL_SESSION_COLUMNS:
            value = PERSONAL_SESSION_COLUMNS[column.name]
            blank = "[]" if value == () else None  # text[] travels as JSON text
            for row in rows:
                cleared[index][row] = blank
    return cleared


def purge_sessions(cur: psycopg.Cursor[Any], schema: str, session_ids: Sequence[str]) -> int:
    """Delete the personal rows of `session_ids` and clear their personal `sessions`
    columns; returns the rows touched. Inside the erasure's transaction."""
    touched = 0
    for table in PERSONAL_TABLES:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE session_id = ANY(%s)").format(
                sql.Identifier(schema, table)
            ),
            (list(session_ids),),
        )
        touched += max(cur.rowcount, 0)
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(
            sql.Identifier(name), sql.Literal("{}") if value == () else sql.SQL("NULL")
        )
        for name, value in PERSONAL_SESSION_COLUMNS.items()
    )
    cur.execute(
        sql.SQL("UPDATE {} SET {} WHERE session_id = ANY(%s)").format(
            sql.Identifier(schema, "sessions"), assignments
        ),
        (list(session_ids),),
    )
    return touched + max(cur.rowcount, 0)
