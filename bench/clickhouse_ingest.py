"""What one event costs the ClickHouse projection: Python rows versus raw JSON.

    .venv/bin/python -m bench.clickhouse_ingest [--events 10000] [--repeats 3]

Both paths write the same batch of events (the shared recorded sessions, copied under new
session ids until the batch is full) into a fresh database of a scratch chDB folder, in
the same run:
- `rows`: the previous writer, `rows.rows_for` per event, `formats.encode_rows`, one
  insert per table (deduplication tokens as it sent them), into the previous schema
  (migrations 0001 and 0002: every rollup fed by a materialized view);
- `raw`: the current writer, `ClickHouseProjection.write_batch`: the published bytes as
  JSONEachRow lines into `ingest`, ClickHouse's materialized views build the rows.

Reported per event, median over repeats: Python CPU of the calling thread
(`time.thread_time`: building the payload, plus whatever of the insert chDB runs on that
thread), of which building the payload alone, process CPU (`time.process_time`, every
thread, ClickHouse's included) and wall time. Each repeat writes a new batch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fixtures.make_sessions import load
from turnlog.projections.clickhouse.formats import encode_rows
from turnlog.projections.clickhouse.migrate import (
    MIGRATIONS_DIR,
    ClickHouseMigrations,
    migrate_clickhouse,
)
from turnlog.projections.clickhouse.rows import TABLES, Row, Table, rows_for
from turnlog.projections.clickhouse.store import AnalyticsStore, connect, exit_past_chdb_teardown
from turnlog.projections.clickhouse.writer import ClickHouseProjection, ingest_lines
from turnlog.projections.migrations import load_migrations, migrate
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, encode

Event = CloudEvent[Any]
PREVIOUS_SCHEMA = 2
"""The last migration before the raw ingest (0003)."""
Path = tuple[Callable[[Sequence[SourceRecord]], None], Callable[[Sequence[SourceRecord]], Any]]
"""A write path: (write a batch, build its payload only)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One repeat of one path, microseconds per event."""

    thread_cpu: float
    prepare: float
    process_cpu: float
    wall: float


def batch_events(count: int, copy: int) -> list[SourceRecord]:
    """``count`` events: the shared sessions again and again, each copy under its own
    session ids (``copy`` tells repeats apart), with their published bytes."""
    sessions = list(load().values())
    events: list[Event] = []
    n = 0
    while len(events) < count:
        for session in sessions:
            suffix = f"-b{copy}-{n}"
            events.extend(e.model_copy(update={"sessionid": e.sessionid + suffix,
                                               "partitionkey": e.sessionid + suffix})
                          for e in session)  # fmt: skip
            n += 1
    events = events[:count]
    return [SourceRecord(EVENTS_TOPIC, 0, i, e, encode(e)) for i, e in enumerate(events)]


def rows_path(store: AnalyticsStore, db: str) -> Path:
    """The previous writer: (write, prepare)."""

    def prepare(records: Sequence[SourceRecord]) -> dict[Table, bytes]:
        tables: dict[Table, list[Row]] = defaultdict(list)
        for r in records:
            for table, row in rows_for(r.event):
                tables[table].append(row)
        return {t: encode_rows(rows) for t, rows in tables.items()}

    def write(records: Sequence[SourceRecord]) -> None:
        tables: dict[Table, list[Row]] = defaultdict(list)
        for r in records:
            for table, row in rows_for(r.event):
                tables[table].append(row)
        token = f"{records[0].offset}-{records[-1].offset}-{records[0].event.sessionid}"
        for table in TABLES:
            if tables[table]:
                store.insert(
                    f"`{db}`.`{table.name}`", tables[table], column_names=table.columns,
                    settings={"insert_deduplicate": 1, "async_insert": 0,
                              "deduplicate_blocks_in_dependent_materialized_views": 1,
                              "insert_deduplication_token": f"{table.name}@{token}"},
                )  # fmt: skip

    return write, prepare


def raw_path(store: AnalyticsStore, db: str) -> Path:
    """The current writer: (write, prepare)."""
    projection = ClickHouseProjection(store, database=db)

    def write(records: Sequence[SourceRecord]) -> None:
        projection.write_batch(records)

    def prepare(records: Sequence[SourceRecord]) -> str:
        return ingest_lines(records).decode()  # as write_batch sends it

    return write, prepare


def measure(store: AnalyticsStore, path: str, events: int, repeat: int) -> Sample:
    db = f"bench_{path}_{repeat}"
    store.command(f"DROP DATABASE IF EXISTS `{db}`")
    if path == "rows":  # the schema the previous writer wrote to
        previous = [m for m in load_migrations(MIGRATIONS_DIR) if m.version <= PREVIOUS_SCHEMA]
        migrate(ClickHouseMigrations(store, db), previous)
    else:
        migrate_clickhouse(store, database=db)
    write, prepare = (rows_path if path == "rows" else raw_path)(store, db)
    records = batch_events(events, copy=repeat)
    began = time.thread_time()
    prepare(records)
    prepared = time.thread_time() - began
    thread, process, wall = time.thread_time(), time.process_time(), time.perf_counter()
    write(records)
    thread = time.thread_time() - thread
    process = time.process_time() - process
    wall = time.perf_counter() - wall
    store.command(f"DROP DATABASE `{db}`")
    per = 1e6 / events
    return Sample(thread * per, prepared * per, process * per, wall * per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="turnlog-bench-ch-") as folder:
        store = connect(f"chdb://{folder}")
        measure(store, "raw", 500, 100)  # warm up the engine and the views
        measure(store, "rows", 500, 100)
        samples: dict[str, list[Sample]] = {"rows": [], "raw": []}
        for repeat in range(args.repeats):
            for path in ("rows", "raw"):  # alternate, so drift hits both alike
                samples[path].append(measure(store, path, args.events, repeat))
        print(f"{args.events} events per batch, medians of {args.repeats}, µs per event")
        print(f"{'path':<6}{'thread CPU':>12}{'of it prepare':>15}{'process CPU':>13}{'wall':>9}")
        for path, runs in samples.items():
            med = {f: statistics.median(getattr(s, f) for s in runs)
                   for f in ("thread_cpu", "prepare", "process_cpu", "wall")}  # fmt: skip
            print(f"{path:<6}{med['thread_cpu']:>12.1f}{med['prepare']:>15.1f}"
                  f"{med['process_cpu']:>13.1f}{med['wall']:>9.1f}")  # fmt: skip
    exit_past_chdb_teardown(0)


if __name__ == "__main__":
    main()
