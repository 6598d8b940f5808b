"""The writer's SQL, rendered from the table specs: one statement per table that upserts
a whole batch from column arrays (`INSERT ... SELECT FROM unnest(...) ON CONFLICT`), so a
batch costs one round trip per table whatever its size. Arrays go in binary (`%b`):
the text format escapes every element with a regular expression, a third of the
client's time per batch.

Arrays of text arrays cannot go through `unnest` (it would flatten them), so `text[]` and
`jsonb` columns travel as JSON text and are converted in the SELECT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from turnlog.projections.postgres.tables import Column, Merge, Table

_JSON_TYPES = frozenset({"text[]", "jsonb"})


def qualified(schema: str, table: str) -> sql.Composable:
    return sql.Identifier(schema, table)


def _param_type(column: Column) -> str:
    return "text" if column.type in _JSON_TYPES else column.type


def _select_expr(column: Column) -> sql.Composable:
    source = sql.SQL("u.{}").format(sql.Identifier(column.name))
    if column.type == "text[]":
        return sql.SQL("ARRAY(SELECT jsonb_array_elements_text({}::jsonb))").format(source)
    if column.type == "jsonb":
        return sql.SQL("{}::jsonb").format(source)
    return source


def _merge_expr(column: Column) -> sql.Composable:
    """`SET` right-hand side; `t` is the stored row, `excluded` the batch's folded row."""
    t = sql.SQL("t.{}").format(sql.Identifier(column.name))
    new = sql.SQL("excluded.{}").format(sql.Identifier(column.name))
    collate = sql.SQL(' COLLATE "C"') if column.type == "text" else sql.SQL("")
    if column.merge is Merge.SUM:
        return sql.SQL("{} + {}").format(t, new)
    if column.merge is Merge.LEAST:
        return sql.SQL("LEAST({}{}, {})").format(t, collate, new)
    if column.merge is Merge.GREATEST:
        return sql.SQL("GREATEST({}{}, {})").format(t, collate, new)
    if column.merge is Merge.UNION:
        return sql.SQL(
            'ARRAY(SELECT DISTINCT v COLLATE "C" FROM unnest({} || {}) AS v ORDER BY 1)'
        ).format(t, new)
    if column.merge is Merge.LATEST:
        stamp = sql.Identifier(column.stamp or "")
        return sql.SQL("CASE WHEN excluded.{} > COALESCE(t.{}, 0) THEN {} ELSE {} END").format(
            stamp, stamp, new, t
        )
    raise ValueError(f"{column.name}: {column.merge} has no SET expression")


def upsert(table: Table, schema: str) -> sql.Composed:
    """Upsert every row of the column arrays given as parameters, in column order."""
    columns = table.all_columns
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    arrays = sql.SQL(", ").join(
        sql.SQL("%b::{}[]").format(sql.SQL(_param_type(c))) for c in columns
    )
    merged = [c for c in table.columns if c.merge is not Merge.KEEP]
    action: sql.Composable
    if merged:
        action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c.name), _merge_expr(c)) for c in merged
        ))
    else:
        action = sql.SQL("DO NOTHING")
    return sql.SQL(
        "INSERT INTO {table} AS t ({names}) "
        "SELECT {exprs} FROM unnest({arrays}) AS u({names}) "
        "ON CONFLICT ({key}) {action}"
    ).format(
        table=qualified(schema, table.name),
        names=names,
        exprs=sql.SQL(", ").join(_select_expr(c) for c in columns),
        arrays=arrays,
        key=sql.SQL(", ").join(sql.Identifier(c.name) for c in table.key),
        action=action,
    )


def upsert_params(table: Table, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The column arrays of `rows` for `upsert`, in the same column order."""
    return column_params(table, [[row[c.name] for row in rows] for c in table.all_columns])


def column_params(table: Table, columns: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """`upsert`'s parameters from the table's columns of values, in `all_columns` order:
    `text[]` and `jsonb` values as JSON text, `double precision` ones as floats."""
    params: list[list[Any]] = []
    for column, values in zip(table.all_columns, columns, strict=True):
        if column.type in _JSON_TYPES:
            params.append([None if v is None else _json(v) for v in values])
        elif column.type == "double precision":  # binary arrays refuse int and float mixed
            params.append([None if v is None else float(v) for v in values])
        else:
            params.append(list(values))
    return params


def _json(value: Any) -> str:
    if not value and isinstance(value, tuple | list):
        return "[]"  # most text arrays are empty: skip the encoder
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def claim_events(schema: str) -> sql.Composed:
    """Record the batch's (session_id, sequence) pairs in the ledger; return the pairs
    that were new. A pair another transaction is recording waits for it, then is not new:
    two projectors racing over one partition still apply each event once."""
    return sql.SQL(
        "INSERT INTO {} (session_id, sequence) "
        "SELECT * FROM unnest(%b::text[], %b::bigint[]) "
        "ON CONFLICT DO NOTHING RETURNING session_id, sequence"
    ).format(qualified(schema, "applied_events"))


def save_offsets(schema: str) -> sql.Composed:
    """Upsert the next offset of each (topic, partition) for one consumer. GREATEST: a
    late commit from a consumer that lost the partition never moves it backwards."""
    return sql.SQL(
        "INSERT INTO {} AS t (consumer, topic, partition, next_offset) "
        "SELECT %s, * FROM unnest(%b::text[], %b::integer[], %b::bigint[]) "
        "ON CONFLICT (consumer, topic, partition) DO UPDATE SET "
        "next_offset = GREATEST(t.next_offset, excluded.next_offset), updated_at = now()"
    ).format(qualified(schema, "consumer_offsets"))


def load_offsets(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT partition, next_offset FROM {} WHERE consumer = %s AND topic = %s"
    ).format(qualified(schema, "consumer_offsets"))
