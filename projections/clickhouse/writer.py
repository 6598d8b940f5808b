"""The batch writer: consumed records in, one insert of raw events, exactly once in effect.

A batch is one insert into ``ingest`` (a Null table): per event, its JSON as published
(``SourceRecord.value``, else ``schemas.encode`` of the event) with its log position and
type. ClickHouse's materialized views build the rows of ``events``, ``turn_facts``,
``metrics``, ``usage`` and ``errors`` from it; Python builds no rows.

Exactness comes from the tables, not from this writer: every base table is keyed by the
event (session id, sequence) and read FINAL, the rollups that sum are views over them,
and the distinct-count rollups cannot count an event twice. So writing an event again, in
a batch cut differently, or from another offset of the log, changes no answer.

After the events, the writer records per partition the next offset it has not applied
(``positions``); records below it are skipped, so a restart does not write again what it
wrote (a saving, not a condition of exactness).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from turnlog.projections.clickhouse.migrate import quote_database
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.records import SourceRecord
from turnlog.schemas import encode

logger = logging.getLogger(__name__)

INGEST_SETTINGS: Final = (
    "input_format_json_read_objects_as_strings = 1, "  # the event's JSON object, verbatim
    "async_insert = 0"  # chDB defaults to 1; the batch must be visible when we return
)

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


def ingest_lines(records: Sequence[SourceRecord]) -> bytes:
    """``records`` as ``JSONEachRow`` lines of the ``ingest`` table. The event's bytes are
    spliced in as they are (a JSON object, read back as a string): no per-event encoding
    unless the event has no published bytes (it was upcast)."""
    topics: dict[str, bytes] = {}
    lines = []
    for r in records:
        topic = topics.get(r.topic)
        if topic is None:
            topic = topics[r.topic] = json.dumps(r.topic).encode()
        value = r.value if r.value is not None else encode(r.event)
        lines.append(
            b'{"topic":%b,"partition":%d,"offset":%d,"type":"%b","value":%b}'
            % (topic, r.partition, r.offset, r.event.type.encode(), value)
        )
    return b"\n".join(lines)


def insert_lines(store: AnalyticsStore, statement: str, body: bytes) -> None:
    """Run ``statement`` (an INSERT without FORMAT) with ``body``, JSONEachRow lines,
    inline in the statement.

    Not chDB's streaming insert (``send_insert``), although it costs chDB about 5 µs per
    event less: chDB 4.4 drops a block a materialized view fails on without an error, so
    an event ClickHouse refuses would vanish with its whole batch instead of being
    isolated (tests/integration/test_clickhouse_projector.py)."""
    store.command(f"{statement} FORMAT JSONEachRow\n{body.decode()}")


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
        """Write ``records``; return how many were sent (those past the stored positions,
        each log position once). On ``AnalyticsStoreError``, write the same records again
        (or any other cut of them): nothing is counted twice."""
        pending = self.pending(records)
        if not pending:
            return 0
        started = time.perf_counter()
        self.insert_events(pending)
        self.record_positions(offset_ranges(pending))
        logger.debug(
            "wrote %d events in %.3fs", len(pending), time.perf_counter() - started,
            extra={"database": self.database, "events": len(pending)},
        )  # fmt: skip
        return len(pending)

    def insert_events(self, records: Sequence[SourceRecord]) -> None:
        """One insert of ``records`` into ``ingest`` (no positions)."""
        statement = (
            f"INSERT INTO {self._db}.ingest (topic, partition, offset, type, value) "
            f"SETTINGS {INGEST_SETTINGS}"
        )
        insert_lines(self.store, statement, ingest_lines(records))

    def record_positions(self, ranges: Sequence[OffsetRange]) -> None:
        """Store, per partition of ``ranges``, the offset after its last record."""
        self.record_next_offsets({(r.topic, r.partition): r.last + 1 for r in ranges})

    def record_next_offsets(self, offsets: Mapping[Partition, int]) -> None:
        """Store the next offset of each partition of ``offsets`` that moves it forward."""
        known = self._known_positions()
        ahead = {p: n for p, n in offsets.items() if n > known.get(p, 0)}
        if not ahead:
            return
        self.store.insert(
            f"{self._db}.positions",
            [(topic, partition, n) for (topic, partition), n in sorted(ahead.items())],
            column_names=("topic", "partition", "next_offset"),
            settings={"async_insert": 0},
        )
        known.update(ahead)

    def pending(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
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
