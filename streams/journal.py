"""The ClickHouse write journal: closes the one gap of the ClickHouse projection's
exactly-once scheme.

`ClickHouseProjection.write_batch` names each insert by the batch's offset ranges (the
deduplication token), then records the partitions' next offsets (`positions`). A crash
between the two leaves rows in ClickHouse that the restarted worker would write again
under another token, because Kafka redelivers from the last committed offset and the new
batches are cut differently: the deduplicating engines collapse such rows only at merge
time, and the rollups count them twice.

So before each `write_batch` the processor records here exactly which records it writes
(topic, partition, offsets), and clears the entry after the write returns. A worker that
starts and finds an entry re-reads exactly those records from Kafka and writes them again
before it consumes anything: same ranges, same tokens, so ClickHouse drops whatever of it
already arrived, and the positions then advance past it. A process crash (kill -9) cannot
lose the entry (the page cache outlives the process); a machine crash might, which leaves
the gap as the projection documents it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnlog.projections.records import SourceRecord

Runs = list[tuple[int, int]]
"""Inclusive offset runs, ascending."""


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """The records of an unfinished ClickHouse write, by (topic, partition)."""

    database: str
    offsets: dict[tuple[str, int], Runs]

    def offset_set(self, topic: str, partition: int) -> set[int]:
        return {o for first, last in self.offsets[topic, partition] for o in range(first, last + 1)}

    @property
    def size(self) -> int:
        return sum(last - first + 1 for runs in self.offsets.values() for first, last in runs)


class WriteJournal:
    """One pending ClickHouse write, in a small JSON file (replaced atomically)."""

    def __init__(self, path: Path, *, database: str) -> None:
        self.path = path
        self.database = database

    def begin(self, records: Iterable[SourceRecord]) -> None:
        by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
        for record in records:
            by_partition[record.topic, record.partition].append(record.offset)
        entry = {
            "database": self.database,
            "records": [
                [topic, partition, _runs(offsets)]
                for (topic, partition), offsets in sorted(by_partition.items())
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(entry))
        os.replace(temporary, self.path)

    def done(self) -> None:
        self.path.unlink(missing_ok=True)

    def pending(self) -> PendingWrite | None:
        """The unfinished write, or None. An entry of another database is not ours."""
        try:
            raw: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        if raw.get("database") != self.database:
            return None
        offsets = {
            (str(topic), int(partition)): [(int(a), int(b)) for a, b in runs]
            for topic, partition, runs in raw["records"]
        }
        return PendingWrite(self.database, offsets)


def _runs(offsets: list[int]) -> Runs:
    runs: Runs = []
    for offset in sorted(set(offsets)):
        if runs and runs[-1][1] == offset - 1:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    return runs
