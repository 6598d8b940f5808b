"""A PostgresProjection in memory: the same interface, the same merge rules, no database.

For tests of what feeds the projection (the Faust agents) and for the property tests of
the merge rules. It applies a batch the way the writer does: skip pairs already in the
ledger, fold the new events' row operations, merge the folded rows into the stored ones,
then move the offsets; so its rows equal the database's for the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from turnlog.projections.postgres.fold import Fold, Row
from turnlog.projections.postgres.rows import reads, row_ops
from turnlog.projections.postgres.writer import BatchResult, EventKey
from turnlog.projections.records import SourceRecord


class InMemoryProjection:
    """Read models, ledger and committed offsets of one consumer, in dictionaries."""

    def __init__(self, *, consumer: str = "pg-projector") -> None:
        self.consumer = consumer
        self.state = Fold()
        self.applied: set[EventKey] = set()
        self.offsets: dict[tuple[str, int], int] = {}

    def apply_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        batch = Fold()
        new: set[EventKey] = set()
        offsets: dict[tuple[str, int], int] = {}
        duplicates = ignored = 0
        for record in records:
            position = (record.topic, record.partition)
            offsets[position] = max(offsets.get(position, 0), record.offset + 1)
            if not reads(record.event):
                ignored += 1
            elif record.key in self.applied or record.key in new:
                duplicates += 1
            else:
                new.add(record.key)
                batch.add_all(row_ops(record.event))
        self.state.merge(batch)
        self.applied |= new
        for position, offset in offsets.items():
            self.offsets[position] = max(self.offsets.get(position, 0), offset)
        return BatchResult(
            applied=len(new),
            skipped_duplicates=duplicates,
            ignored=ignored,
            rows={name: len(rows) for name, rows in batch.tables.items() if rows},
            offsets=offsets,
        )

    def committed_offsets(self, topic: str) -> dict[int, int]:
        return {p: o for (t, p), o in self.offsets.items() if t == topic}

    def rows(self, table: str) -> list[Row]:
        """The rows of `table`, ordered by key."""
        return self.state.rows(table)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every table's rows, ordered by key: two projections with equal snapshots hold
        the same read models."""
        return {name: self.state.rows(name) for name in self.state.tables}
