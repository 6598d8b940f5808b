"""CPU per event of the PostgreSQL projection's rows, and of a whole `apply_batch`.

Rows: the row operations folded per key then cut into column arrays (`row_ops`, `Fold`,
`upsert_params`: what the writer did) against `BatchRows` (one pass, what it does), on the
same 10,000-event batch of realistic sessions (see `bench.decode_cpu.session_bodies`),
median of 5, with the default garbage collector and after `gc.freeze()` with a higher
generation-0 threshold.

apply_batch: wall and CPU time per event of whole batches against the shared PostgreSQL,
each writer into its own scratch schema (dropped afterwards), every batch of new
sessions: the writer as it was (folded rows, one round trip per statement) against the
writer as it is (one-pass rows, pipeline mode). Interleaved, median of 5.

    .venv/bin/python -m bench.pg_rows_cpu [--events 10000] [--repeats 5] [--threshold 50000]
        [--dsn postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from bench.decode_cpu import session_bodies
from turnlog.projections.postgres import statements
from turnlog.projections.postgres.fold import BatchRows, Fold
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.projections.postgres.rows import RowOp, reads, row_ops
from turnlog.projections.postgres.tables import TABLES
from turnlog.projections.postgres.writer import BatchResult, PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, decode

PARTITIONS = 12


def batch(events: int, *, tag: str) -> list[SourceRecord]:
    """Decoded records of new sessions, spread over partitions by session id."""
    offsets = [0] * PARTITIONS
    records = []
    for body in session_bodies(events, tag=tag):
        event = decode(body)
        partition = zlib.crc32(event.sessionid.encode()) % PARTITIONS
        records.append(SourceRecord(EVENTS_TOPIC, partition, offsets[partition], event))
        offsets[partition] += 1
    return records


def folded_params(events: Sequence[CloudEvent[Any]]) -> dict[str, list[list[Any]]]:
    """The writer's rows as they were built: row operations, a fold, then arrays."""
    fold = Fold()
    for event in events:
        fold.add_all(row_ops(event))
    return {name: statements.upsert_params(table, fold.rows(name))
            for name, table in TABLES.items() if fold.tables[name]}  # fmt: skip


def one_pass_params(events: Sequence[CloudEvent[Any]]) -> dict[str, list[list[Any]]]:
    rows = BatchRows()
    rows.add_all(events)
    return rows.params()


class FoldingProjection(PostgresProjection):
    """The writer as it was: row operations per event, folded, and one round trip per
    statement (begin, claim, each table, offsets, commit)."""

    def apply_batch(self, records: Sequence[SourceRecord]) -> BatchResult:
        ops: dict[tuple[str, int], list[RowOp]] = {}
        offsets: dict[tuple[str, int], int] = {}
        for record in records:
            position = (record.topic, record.partition)
            offsets[position] = max(offsets.get(position, 0), record.offset + 1)
            if reads(record.event) and record.key not in ops:
                ops[record.key] = row_ops(record.event)
        fold = Fold()
        for key_ops in ops.values():
            fold.add_all(key_ops)
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            new_keys = self._claim_events(cur, ops)
            if len(new_keys) != len(ops):
                raise SystemExit("the benchmark's batches must hold new events only")
            for name, table in TABLES.items():
                rows = fold.rows(name)
                if rows:
                    cur.execute(self._upserts[name], statements.upsert_params(table, rows))
            self._write_offsets(cur, offsets)
        return BatchResult(applied=len(new_keys), skipped_duplicates=0)


def cpu_per_event(
    build: Callable[[Sequence[CloudEvent[Any]]], object], events: Sequence[CloudEvent[Any]]
) -> float:
    start = time.process_time()
    build(events)
    return (time.process_time() - start) / len(events) * 1e6


@contextmanager
def scratch_schema(dsn: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    migrate_postgres(dsn, schema=name)
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def apply_timings(
    projection: PostgresProjection, records: Sequence[SourceRecord]
) -> tuple[float, float]:
    """Wall and CPU µs per event of one `apply_batch`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = projection.apply_batch(records)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if result.applied != len(records):
        raise SystemExit(f"applied {result.applied} of {len(records)} events")
    return wall / len(records) * 1e6, cpu / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=int, default=50_000)
    parser.add_argument("--dsn", default="postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog")
    args = parser.parse_args()

    records = batch(args.events, tag="")
    events = [r.event for r in records]
    if folded_params(events) != one_pass_params(events):
        raise SystemExit("the two ways of building rows disagree")
    builders = {"row_ops + Fold + upsert_params (before)": folded_params,
                "BatchRows (one pass)": one_pass_params}  # fmt: skip
    rows: dict[str, dict[str, list[float]]] = {"default gc": {}, "tuned gc": {}}
    for setting in rows:
        if setting == "tuned gc":
            gc.collect()
            gc.freeze()
            gc.set_threshold(args.threshold, 20, 20)
        for _ in range(args.repeats):
            for name, build in builders.items():
                rows[setting].setdefault(name, []).append(cpu_per_event(build, events))

    print(f"{len(events)} events, median of {args.repeats}, CPU µs per event")
    print(f"| rows + statement parameters | default gc | gc.freeze() + threshold "
          f"{args.threshold} |\n|---|---:|---:|")  # fmt: skip
    for name in builders:
        print(f"| {name} | {statistics.median(rows['default gc'][name]):.2f} | "
              f"{statistics.median(rows['tuned gc'][name]):.2f} |")  # fmt: skip

    batches = [batch(args.events, tag=f"r{n}") for n in range(args.repeats)]
    gc.collect()
    gc.freeze()  # the batches are start-up state here
    timings: dict[str, list[tuple[float, float]]] = {"before": [], "now": []}
    with (
        scratch_schema(args.dsn) as old_schema,
        scratch_schema(args.dsn) as new_schema,
        psycopg.connect(args.dsn, autocommit=True) as old_conn,
        psycopg.connect(args.dsn, autocommit=True) as new_conn,
    ):
        writers = {"before": FoldingProjection(old_conn, schema=old_schema),
                   "now": PostgresProjection(new_conn, schema=new_schema)}  # fmt: skip
        for records in batches:
            for name, writer in writers.items():
                timings[name].append(apply_timings(writer, records))
    print(f"\napply_batch, {args.events}-event batches of new sessions, median of "
          f"{args.repeats}, µs per event (tuned gc)\n| writer | wall | CPU |\n|---|---:|---:|")
    for name, values in timings.items():
        print(f"| {name} | {statistics.median(v[0] for v in values):.2f} | "
              f"{statistics.median(v[1] for v in values):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
