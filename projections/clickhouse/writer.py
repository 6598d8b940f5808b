"""The batch writer: consumed records in, one insert per table, exactly once in effect.

A batch is written as one insert per table, each with an insert deduplication token
derived from the batch's log positions (topic, partition, first and last offset) and the
table. ClickHouse keeps the recent tokens of every table, the rollups fed by materialized
views included, so writing the same batch again (a retry after a timeout or a crash)
adds nothing anywhere.

After the rows, the writer records per partition the next offset it has not applied
(table ``positions``). Records below it are skipped, so a batch that is re-read and cut
differently after a restart adds nothing either. The one gap left: a crash after some of
a batch's inserts but before its position, followed by a re-read cut differently; the
base tables still collapse those duplicates (ReplacingMergeTree on (session_id,
sequence)) and the distinct counts ignore them, but sums and latency histograms of the
rollups count that batch's overlap twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from turnlog.projections.clickhouse.migrate import quote_database
from turnlog.projections.clickhouse.rows import POSITIONS, TABLES, Row, Table, rows_for
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.records import SourceRecord

logger = logging.getLogger(__name__)

INSERT_SETTINGS: Final[Mapping[str, Any]] = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "async_insert": 0,  # chDB defaults to 1; tokens apply to synchronous blocks
}

Partition = tuple[str, int]
"""(topic, partition)."""


@dataclass(frozen=True, slots=True, order=True)
class OffsetRange:
    """The records of one partition in a batch: offsets ``first`` to ``last``, inclusive."""

    topic: str
    partition: int
    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}:{self.first}-{self.last}"


def offset_ranges(records: Iterable[SourceRecord]) -> list[OffsetRange]:
    """The offset range of each partition in ``records``, sorted by topic and partition."""
    bounds: dict[Partition, tuple[int, int]] = {}
    for r in records:
        first, last = bounds.get((r.topic, r.partition), (r.offset, r.offset))
        bounds[r.topic, r.partition] = (min(first, r.offset), max(last, r.offset))
    return sorted(OffsetRange(t, p, first, last) for (t, p), (first, last) in bounds.items())


def dedup_token(table: str, ranges: Sequence[OffsetRange]) -> str:
    """The insert deduplication token of ``table``'s insert for a batch of ``ranges``.

    Deterministic: the same records give the same token, whatever their order in the
    batch. Short batches read as they are (``events@turnlog.events/0:100-199``); a batch
    over many partitions is named by a digest of its ranges.
    """
    spelled = ",".join(str(r) for r in sorted(ranges))
    if len(spelled) > 200:
        spelled = "sha256:" + hashlib.sha256(spelled.encode()).hexdigest()
    return f"{table}@{spelled}"


class ClickHouseProjection:
    """Writes consumed records to the analytics tables of ``database``."""

    def __init__(self, store: AnalyticsStore, *, database: str) -> None:
        self.store = store
        self.database = database
        self._db = quote_database(database)
        self._positions: dict[Partition, int] | None = None

    def positions(self) -> dict[Partition, int]:
        """Per (topic, partition), the next offset not yet applied, read from ClickHouse.

        Seek the consumer here when partitions are assigned, so records already written
        are not fetched again."""
        self._positions = self._read_positions()
        return dict(self._positions)

    def write_batch(self, records: Sequence[SourceRecord]) -> int:
        """Write ``records``; return how many events were sent (those past the stored
        positions; ClickHouse drops any it already has from the same batch, by token).
        On ``AnalyticsStoreError``, write the same batch again."""
        pending = self._past_positions(records)
        if not pending:
            return 0
        started = time.perf_counter()
        ranges = offset_ranges(pending)
        events = _first_of_each_event(pending)
        tables: dict[Table, list[Row]] = defaultdict(list)
        for record in events:
            for table, row in rows_for(record.event):
                tables[table].append(row)
        for table in TABLES:
            if tables[table]:
                self._insert(table, tables[table], ranges)
        self._insert(POSITIONS, [(r.topic, r.partition, r.last + 1) for r in ranges], ranges)
        positions = self._known_positions()
        for r in ranges:
            positions[r.topic, r.partition] = r.last + 1
        logger.debug(
            "wrote %d events (%s) in %.3fs",
            len(events), ", ".join(map(str, ranges)), time.perf_counter() - started,
            extra={"database": self.database, "events": len(events)},
        )  # fmt: skip
        return len(events)

    def _insert(self, table: Table, rows: list[Row], ranges: Sequence[OffsetRange]) -> None:
        token = dedup_token(table.name, ranges)
        self.store.insert(
            f"{self._db}.`{table.name}`",
            rows,
            column_names=table.columns,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
        )

    def _past_positions(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """Records at or past their partition's position, each log position once."""
        positions = self._known_positions()
        seen: set[tuple[str, int, int]] = set()
        pending = []
        for r in records:
            where = (r.topic, r.partition, r.offset)
            if r.offset >= positions.get((r.topic, r.partition), 0) and where not in seen:
                seen.add(where)
                pending.append(r)
        return pending

    def _known_positions(self) -> dict[Partition, int]:
        if self._positions is None:
            self._positions = self._read_positions()
        return self._positions

    def _read_positions(self) -> dict[Partition, int]:
        rows = self.store.query(
            f"SELECT topic, partition, max(next_offset) FROM {self._db}.positions "
            "GROUP BY topic, partition"
        )
        return {(str(t), int(p)): int(n) for t, p, n in rows}


def _first_of_each_event(records: Sequence[SourceRecord]) -> list[SourceRecord]:
    """One record per event (session id, sequence): the log may hold an event twice."""
    seen: set[tuple[str, int]] = set()
    unique = []
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            unique.append(r)
    return unique
