"""Fold row operations into one row per table and key, by the tables' merge rules.

The writer folds a batch before it talks to PostgreSQL: a session's hundred events become
one session row, and each statement then touches a key once (which `ON CONFLICT DO UPDATE`
requires). Because every merge rule is associative and commutative, folding first and
merging the folded row into the stored one gives the same row as merging each write in
turn. The in-memory projection keeps its whole state in a `Fold`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from turnlog.projections.postgres.rows import Insert, RowOp
from turnlog.projections.postgres.tables import TABLES, merge_into, new_row

Row = dict[str, Any]
"""A complete row: every column of its table, key columns included."""


class Fold:
    """Rows by table, then by key, merged from the row operations added so far."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in TABLES}

    def add(self, op: RowOp) -> None:
        rows = self.tables[op.table]
        row = rows.get(op.key)
        if row is None:
            rows[op.key] = new_row(TABLES[op.table], op.key, op.values)
        elif not isinstance(op, Insert):
            merge_into(TABLES[op.table], row, op.values)

    def add_all(self, ops: Iterable[RowOp]) -> None:
        for op in ops:
            self.add(op)

    def rows(self, table: str) -> list[Row]:
        """The rows of `table`, ordered by key."""
        rows = self.tables[table]
        return [rows[key] for key in sorted(rows)]

    def merge(self, other: Fold) -> None:
        """Merge every row of `other` into this fold, as if its operations were added."""
        for name, rows in other.tables.items():
            table = TABLES[name]
            mine = self.tables[name]
            for key, row in rows.items():
                current = mine.get(key)
                if current is None:
                    mine[key] = dict(row)
                elif not table.facts_only:
                    values = {c.name: row[c.name] for c in table.columns}
                    merge_into(table, current, values)
