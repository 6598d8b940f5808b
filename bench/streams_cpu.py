"""CPU per event of each stage of the streams projections, v2 against v1 in the same run.

    .venv/bin/python -m bench.streams_cpu [--events 10000] [--repeats 5] [--seed 7]
        [--no-v1] [--v1-worktree /tmp/turnlog-v1]

One process, no Kafka: batches of `--events` encoded `streams_mix` events (whole
sessions interleaved, keyed to 12 partitions by session id, offsets running on across
batches, new sessions in every batch), generated before the worker's GC setting is
applied (`gc.freeze()`, `gc.set_threshold(*streams.cli.GC_THRESHOLD)`). A first batch
warms up (validators, prepared statements, chDB); then `--repeats` batches are timed,
stage by stage, and the tables show medians in µs per event:

- Python: the calling thread's CPU (`time.thread_time()`) less what it spent inside
  chDB's query and insert calls: what the interpreter spends, not PostgreSQL's time
  while psycopg waits;
- chDB: the CPU inside those calls plus the other threads' (the process's CPU,
  `getrusage(RUSAGE_SELF)`, less the thread's; nothing else runs meanwhile);
- wall: the stage's elapsed time.

v2 stages: decode (`streams.decoding.decode_records`), PostgreSQL
(`PostgresProjection.apply_batch` into a scratch schema), ClickHouse
(`ClickHouseProjection.write_batch` into a scratch chDB folder: one insert of the events
as published, rows built by ClickHouse), the engine's per-batch bookkeeping
(`offset_bounds`, `next_offsets`, `StreamsMetrics.record`, dead-letter records). The
budget counts one decode and one bookkeeping per projector process: PostgreSQL and
ClickHouse run apart, so each decodes.

v1 stages (with `V1_COMMIT`'s code, in a child process run from its worktree on the same
event bytes): decode (`streams.processor.decode_records`), PostgreSQL
(`PostgresProjection.apply_batch`), derived read-back (`BatchProcessor._derive`: reading
the batch's turns and closed sessions back from PostgreSQL), ClickHouse
(`ClickHouseProjection.write_batch`: rows in Python, encoded, one insert per table). Its
budget: one decode (one process did everything).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

PARTITIONS: Final = 12
TOPIC: Final = "turnlog.events"
DATABASE: Final = "turnlog"
DEFAULT_DSN: Final = "postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"
BUDGET_US: Final = 40.0
"""Python µs per event for the PostgreSQL and ClickHouse projections together."""
Positioned = tuple[int, int, bytes, bytes]
"""partition, offset, key, value."""
Timings = dict[str, list[tuple[float, float, float]]]
"""Per stage, per timed batch: Python, other threads' CPU, wall (µs per event)."""


def positioned(keyed: Sequence[tuple[str, bytes]], next_offset: list[int]) -> list[Positioned]:
    """Each (session id, value) on its partition (crc32 of the id), at the partition's
    next offset (`next_offset`, one per partition, is advanced)."""
    out: list[Positioned] = []
    for session_id, value in keyed:
        partition = zlib.crc32(session_id.encode()) % len(next_offset)
        out.append((partition, next_offset[partition], session_id.encode(), value))
        next_offset[partition] += 1
    return out


def mix_batches(events: int, count: int, *, seed: int) -> list[list[Positioned]]:
    """`count` batches of `events` encoded `streams_mix` events, new sessions in each."""
    import random
    from datetime import UTC, datetime, timedelta

    from bench.streams_load import backlog_turns
    from bench.streams_measure import interleaved, session_id
    from bench.streams_mix import Session
    from turnlog.schemas import encode

    rng = random.Random(seed)
    next_offset = [0] * PARTITIONS
    batches = []
    sessions = max(1, events // 100)
    turns = backlog_turns(events, sessions) + 1  # a little over: cut at `events`
    for n in range(count):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=n)
        streams = [
            (Session(session_id(f"cpu{seed}-{n}", k), rng), start + timedelta(seconds=k % 5))
            for k in range(sessions)
        ]
        keyed: list[tuple[str, bytes]] = []
        for session, at, payload in interleaved(streams, turns):
            keyed.append((session.id, encode(session.event(payload, at))))
            if len(keyed) == events:
                break
        batches.append(positioned(keyed, next_offset))
    return batches


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ChdbCalls:
    """Wraps a chDB connection to count the calling thread's CPU spent inside chDB (its
    queries and inserts run partly on the caller's thread): not Python's."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return self._conn.query(*args, **kwargs)
        finally:
            self.seconds += time.thread_time() - started

    @contextmanager
    def send_insert(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.thread_time()
        try:
            with self._conn.send_insert(*args, **kwargs) as inserter:
                yield inserter
        finally:
            self.seconds += time.thread_time() - started


def count_chdb_calls(store: Any) -> ChdbCalls:
    """Count the store's writing connection's chDB time (a `ChdbStore`)."""
    calls = ChdbCalls(store._conn)
    store._conn = calls
    return calls


@contextmanager
def timed(timings: Timings, stage: str, events: int, *, keep: bool,
          chdb: ChdbCalls | None = None) -> Iterator[None]:  # fmt: skip
    """Time the block as `stage` (unless not `keep`: a warm-up): Python = the thread's
    CPU less what it spent inside chDB calls; chDB = that plus the other threads' CPU."""
    inside = chdb.seconds if chdb is not None else 0.0
    thread, process, wall = time.thread_time(), _process_cpu(), time.perf_counter()
    yield
    thread = time.thread_time() - thread
    other = max(0.0, _process_cpu() - process - thread)
    wall = time.perf_counter() - wall
    inside = (chdb.seconds if chdb is not None else 0.0) - inside
    if keep:
        scale = 1e6 / events
        timings.setdefault(stage, []).append(
            ((thread - inside) * scale, (other + inside) * scale, wall * scale)
        )


def tune_gc() -> None:
    """The worker's setting (`streams.cli`): start-up state frozen, young objects
    collected less often. Its value is copied for v1, whose code did not set it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def scratch_schema(dsn: str, tag: str) -> str:
    return f"bench_cpu_{tag}_{uuid.uuid4().hex[:8]}"


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def run_v2(batches: list[list[Positioned]], *, dsn: str, folder: Path) -> Timings:
    """Time v2's stages on `batches` (the first a warm-up)."""
    from datetime import UTC, datetime

    import psycopg

    from turnlog.projections.clickhouse.migrate import migrate_clickhouse
    from turnlog.projections.clickhouse.store import connect
    from turnlog.projections.clickhouse.writer import ClickHouseProjection
    from turnlog.projections.postgres.migrate import migrate_postgres
    from turnlog.projections.postgres.writer import PostgresProjection
    from turnlog.streams.cli import GC_THRESHOLD
    from turnlog.streams.decoding import decode_records
    from turnlog.streams.derived_projector import DerivedProjector
    from turnlog.streams.dlq import dead_letter_record
    from turnlog.streams.engine import offset_bounds
    from turnlog.streams.metrics import FRESHNESS_SAMPLES, StreamsMetrics
    from turnlog.streams.projector import Applied
    from turnlog.streams.records import RawRecord

    if GC_THRESHOLD != (50_000, 20, 20):
        raise SystemExit(f"the worker's GC threshold is now {GC_THRESHOLD}: update tune_gc")
    raws = [[RawRecord(TOPIC, p, o, k, v, (), None) for p, o, k, v in b] for b in batches]
    schema = scratch_schema(dsn, "v2")
    migrate_postgres(dsn, schema=schema)
    timings: Timings = {}
    try:
        store = connect(f"chdb://{folder}")
        migrate_clickhouse(store, database=DATABASE)
        clickhouse = ClickHouseProjection(store, database=DATABASE)
        chdb = count_chdb_calls(store)
        metrics = StreamsMetrics()
        derived = unstarted_derived(DerivedProjector)
        with psycopg.connect(dsn, autocommit=True) as conn:
            postgres = PostgresProjection(conn, schema=schema, consumer="bench-cpu")
            tune_gc()
            for n, records in enumerate(raws):
                keep, events = n > 0, len(records)
                with timed(timings, "decode", events, keep=keep):
                    batch = decode_records(records)
                sources = [d.source for d in batch.events]
                with timed(timings, "postgres", events, keep=keep):
                    result = postgres.apply_batch(sources)
                with timed(timings, "clickhouse", events, keep=keep, chdb=chdb):
                    written = clickhouse.write_batch(sources)
                if result.applied != events or written != events:
                    raise SystemExit(f"applied {result.applied}, wrote {written} of {events}")
                with timed(timings, "bookkeeping", events, keep=keep):
                    offset_bounds(batch.records)
                    batch.next_offsets()
                    now = datetime.now(UTC)
                    step = -(-len(sources) // FRESHNESS_SAMPLES)
                    applied = Applied(events=result.applied, duplicates=0, freshness=[
                        (now - s.event.time).total_seconds() for s in sources[::step]])  # fmt: skip
                    [dead_letter_record(d, topic="dlq", at=now) for d in batch.dead_letters]
                    metrics.record("postgres", batch, applied, seconds=0.1, decode_letters=True)
                with timed(timings, "derived", events, keep=keep):
                    fold_derived(derived, batch)
    finally:
        drop_schema(dsn, schema)
    return timings


def unstarted_derived(projector: type[Any]) -> Any:
    """A `DerivedProjector` that never connects, with an empty fold per partition."""
    derived = projector(
        bootstrap="127.0.0.1:9", group="bench-cpu-derived", events_topic=TOPIC,
        turns_topic="turns", sessions_topic="sessions", state_topic="state",
        transactional_id="bench-cpu",
    )  # fmt: skip
    derived._states = {p: derived._new_state() for p in range(PARTITIONS)}
    return derived


def fold_derived(derived: Any, batch: Any) -> None:
    """What `DerivedProjector.apply` does before its Kafka transaction: the fold per
    partition, its outputs and changelog records (the transaction's sends not included)."""
    from turnlog.streams.projector import Applied

    now = time.time()
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for decoded in batch.events:
        by_partition[decoded.raw.partition].append(decoded.source.event)
    offsets = {p: o for (_, p), o in batch.next_offsets().items()}
    applied = Applied()
    for partition in sorted(offsets):
        derived._fold(partition, by_partition.get(partition, []), offsets[partition], applied,
                      now=now, expire=False)  # fmt: skip


def run_v1(batches: list[list[Positioned]], *, dsn: str, folder: Path) -> Timings:
    """Time v1's stages on `batches`; runs in the child process of the worktree."""
    import psycopg

    from turnlog.projections.clickhouse.migrate import migrate_clickhouse
    from turnlog.projections.clickhouse.store import connect
    from turnlog.projections.clickhouse.writer import ClickHouseProjection
    from turnlog.projections.postgres.migrate import migrate_postgres
    from turnlog.projections.postgres.writer import PostgresProjection

    # v1's modules: this runs in the worktree of V1_COMMIT, where they exist
    from turnlog.streams.processor import (  # type: ignore[import-not-found]
        BatchOutcome,
        BatchProcessor,
        decode_records,
    )
    from turnlog.streams.records import RawRecord
    from turnlog.streams.state import PostgresState  # type: ignore[import-not-found]

    raws = [[RawRecord(TOPIC, p, o, k, v, (), None) for p, o, k, v in b] for b in batches]
    schema = scratch_schema(dsn, "v1")
    migrate_postgres(dsn, schema=schema)
    timings: Timings = {}
    try:
        store = connect(f"chdb://{folder}")
        migrate_clickhouse(store, database=DATABASE)
        clickhouse = ClickHouseProjection(store, database=DATABASE)
        chdb = count_chdb_calls(store)
        state = PostgresState(dsn, schema=schema)
        with psycopg.connect(dsn, autocommit=True) as conn:
            postgres = PostgresProjection(conn, schema=schema, consumer="bench-cpu")
            processor = BatchProcessor(postgres, clickhouse, state=state)
            tune_gc()
            for n, records in enumerate(raws):
                keep, events = n > 0, len(records)
                with timed(timings, "decode", events, keep=keep):
                    batch = decode_records(records)
                sources = [d.source for d in batch.events]
                with timed(timings, "postgres", events, keep=keep):
                    result = postgres.apply_batch(sources)
                with timed(timings, "derived", events, keep=keep):
                    processor._derive(batch.events, BatchOutcome(consumed=events))
                with timed(timings, "clickhouse", events, keep=keep, chdb=chdb):
                    written = clickhouse.write_batch(sources)
                if result.applied != events or written != events:
                    raise SystemExit(f"applied {result.applied}, wrote {written} of {events}")
        state.close()
    finally:
        drop_schema(dsn, schema)
    return timings


def v1_in_worktree(batches: list[list[Positioned]], *, dsn: str, worktree: Path,
                   scratch: Path) -> Timings:  # fmt: skip
    """`run_v1` in a child process whose `turnlog` is the worktree's (checked)."""
    data = scratch / "batches.json"
    data.write_text(json.dumps([[(p, o, k.decode(), v.decode()) for p, o, k, v in b]
                                for b in batches]))  # fmt: skip
    out = scratch / "v1.json"
    env = {**os.environ, "PYTHONPATH": str(worktree), "TURNLOG_POSTGRES_DSN": dsn}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--v1-child", str(data),
                    str(scratch / "v1-clickhouse"), str(out)],
                   cwd=worktree, env=env, check=True)  # fmt: skip
    result = json.loads(out.read_text())
    if not str(result["turnlog"]).startswith(str(worktree)):
        raise SystemExit(f"the v1 child imported turnlog from {result['turnlog']}")
    return {stage: [tuple(t) for t in values] for stage, values in result["timings"].items()}


def v1_child(data: Path, folder: Path, out: Path) -> None:
    import turnlog

    batches = [[(p, o, k.encode(), v.encode()) for p, o, k, v in b]
               for b in json.loads(data.read_text())]  # fmt: skip
    dsn = os.environ["TURNLOG_POSTGRES_DSN"]
    timings = run_v1(batches, dsn=dsn, folder=folder)
    out.write_text(json.dumps({"turnlog": turnlog.__file__, "timings": timings}))


def medians(timings: Timings, stage: str) -> tuple[float, float, float] | None:
    values = timings.get(stage)
    if not values:
        return None
    python, other, wall = zip(*values, strict=True)
    return statistics.median(python), statistics.median(other), statistics.median(wall)


V2_TOTAL: Final = {"decode": 2, "postgres": 1, "clickhouse": 1, "bookkeeping": 2}
"""The budget's stages: the PostgreSQL and the ClickHouse process each decode."""
V2_ALL: Final = {"decode": 3, "postgres": 1, "clickhouse": 1, "derived": 1, "bookkeeping": 3}
"""Every projection, each its own process (the derived one's Kafka sends not included)."""
V1_TOTAL: Final = {"decode": 1, "postgres": 1, "derived": 1, "clickhouse": 1}
STAGES: Final = {
    "decode": "decode",
    "postgres": "PostgreSQL apply_batch",
    "clickhouse": "ClickHouse write_batch",
    "derived": "derived (v2: fold and records; v1: read-back from PostgreSQL)",
    "bookkeeping": "engine bookkeeping (v2)",
}


def budget(timings: Timings, weights: dict[str, int]) -> tuple[float, float] | None:
    """Python and other threads' µs per event of the weighted stages."""
    parts = [(medians(timings, s), w) for s, w in weights.items()]
    if any(m is None for m, _ in parts):
        return None
    return (sum(m[0] * w for m, w in parts if m is not None),
            sum(m[1] * w for m, w in parts if m is not None))  # fmt: skip


def table(v2: Timings, v1: Timings | None) -> list[str]:
    """The markdown table: a row per stage, then the budgets."""

    def cells(timings: Timings | None, stage: str) -> str:
        m = medians(timings, stage) if timings is not None else None
        return " | ".join(f"{x:.1f}" for x in m) if m else "- | - | -"

    head = "| stage | v2 Python | v2 chDB | v2 wall | v1 Python | v1 chDB | v1 wall |"
    lines = [head, "|---|" + "---:|" * 6]
    for stage, label in STAGES.items():
        lines.append(f"| {label} | {cells(v2, stage)} | {cells(v1, stage)} |")
    theirs = budget(v1, V1_TOTAL) if v1 is not None else None
    totals = [("**PostgreSQL + ClickHouse** (v2: decode and bookkeeping twice, the budget; "
               "v1: all of it, decode once)", budget(v2, V2_TOTAL)),
              ("all three projections (v2: decode and bookkeeping three times; v1: as above)",
               budget(v2, V2_ALL))]  # fmt: skip
    for label, ours in totals:
        ratio = f" (v1 ÷ v2: {theirs[0] / ours[0]:.2f})" if ours and theirs else ""
        lines.append(
            f"| {label} | " + (f"**{ours[0]:.1f}**{ratio} | {ours[1]:.1f} | |" if ours
                               else "- | - | |")
            + (f" {theirs[0]:.1f} | {theirs[1]:.1f} | |" if theirs else " - | - | |")
        )  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dsn", default=os.environ.get("TURNLOG_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--no-v1", action="store_true", help="v2 only")
    parser.add_argument("--v1-worktree", type=Path, default=Path("/tmp/turnlog-v1"))
    args = parser.parse_args()
    from bench.streams_consumers import ensure_worktree
    from turnlog.infra.stack.config import load_settings

    batches = mix_batches(args.events, args.repeats + 1, seed=args.seed)
    parent = load_settings().state_dir / "bench"
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="streams-cpu-", dir=parent))
    print(f"streams cpu: {os.cpu_count()} cores, {args.repeats} timed batches of "
          f"{args.events:,} streams_mix events (+1 warm-up), seed {args.seed}")  # fmt: skip
    v1: Timings | None = None
    try:
        if not args.no_v1:
            v1 = v1_in_worktree(batches, dsn=args.dsn, worktree=ensure_worktree(args.v1_worktree),
                                scratch=scratch)  # fmt: skip
        v2 = run_v2(batches, dsn=args.dsn, folder=scratch / "v2-clickhouse")
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n**CPU per event by stage**, µs, median of {args.repeats} batches of "
          f"{args.events:,} events, worker GC setting (goal: v2 PostgreSQL + ClickHouse "
          f"≤ {BUDGET_US:g} µs of Python)\n")  # fmt: skip
    print("\n".join(table(v2, v1)))
    from turnlog.projections.clickhouse.store import exit_past_chdb_teardown

    sys.stdout.flush()
    exit_past_chdb_teardown(0)  # chDB's threads may crash in the interpreter's teardown


def child_main(argv: list[str]) -> None:
    data, folder, out = (Path(a) for a in argv)
    v1_child(data, folder, out)
    from turnlog.projections.clickhouse.store import exit_past_chdb_teardown

    exit_past_chdb_teardown(0)


def _entry(argv: list[str], run: Callable[[], None]) -> None:
    if argv[:1] == ["--v1-child"]:
        child_main(argv[1:])
    else:
        run()


if __name__ == "__main__":
    _entry(sys.argv[1:], main)
