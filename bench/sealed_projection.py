"""Projection throughput and storage on sealed events against the same events unsealed,
PostgreSQL and ClickHouse, in one run.

    .venv/bin/python -m bench.sealed_projection [--events 10000] [--batches 6] [--seed 7]

One process, no Kafka (as `bench.streams_cpu`): `--batches` + 1 batches of `--events`
`streams_mix` events (new sessions in every batch, keyed to 12 partitions by session id),
each event also passed through the gateway's `SealingSink` (data key per session, no
redaction): the sealed batch has the same events, positions and order. Both are encoded
before timing; the worker's GC setting is applied. Per batch, in alternating order, each
variant is decoded (`streams.decoding.decode_records`), applied to PostgreSQL
(`PostgresProjection.apply_batch`, its own fresh schema) and written to ClickHouse
(`ClickHouseProjection.write_batch`, its own database in one scratch chDB folder). The
first batch warms up. Reported per stage: events/s (wall, median over batches; the
PostgreSQL server's and chDB's time included) and the calling thread's Python CPU
(µs/event), sealed against plain; then bytes per event in the log (encoded), in
PostgreSQL (read-model tables with indexes and TOAST) and in ClickHouse (active parts
after OPTIMIZE FINAL). Not included: Kafka fetch, the engine's bookkeeping, the derived
and keys projections, the API opening sealed fields when it reads.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from bench.streams_cpu import Positioned, Timings, count_chdb_calls, drop_schema, positioned, timed
from bench.streams_cpu import tune_gc as worker_gc
from bench.streams_measure import interleaved
from bench.streams_mix import Session
from turnlog.agent_gateway.hooks.sink import MemorySink
from turnlog.agent_gateway.sealing import SealingSink
from turnlog.schemas import encode
from turnlog.schemas.sealing import WrappingKey, generate_kek

DEFAULT_DSN: Final = "postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"
TOPIC: Final = "turnlog.events"
PARTITIONS: Final = 12
VARIANTS: Final = ("plain", "sealed")
STAGES: Final = {"decode": "decode", "postgres": "PostgreSQL apply_batch",
                 "clickhouse": "ClickHouse write_batch"}  # fmt: skip


def batches(events: int, count: int, *, seed: int) -> dict[str, list[list[Positioned]]]:
    """`count` batches of `events` encoded events, plain and sealed, same positions."""
    rng = random.Random(seed)
    kek = WrappingKey.from_pem(generate_kek()[1])
    out: dict[str, list[list[Positioned]]] = {v: [] for v in VARIANTS}
    offsets = {v: [0] * PARTITIONS for v in VARIANTS}
    sessions = max(1, events // 100)
    turns = max(1, round((100 - 7) / 22)) + 1
    for n in range(count):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=n)
        streams = [(Session(f"seal-proj-{seed}-{n}-{k:05d}", rng), start + timedelta(seconds=k % 5))
                   for k in range(sessions)]  # fmt: skip
        sealed = MemorySink()
        sink = SealingSink(events=sealed, keys=MemorySink(), wrapping=kek)
        plain: list[tuple[str, bytes]] = []
        for session, at, payload in interleaved(streams, turns):
            event = session.event(payload, at)
            sink.publish(event)
            plain.append((session.id, encode(event)))
            if len(plain) == events:
                break
        out["plain"].append(positioned(plain, offsets["plain"]))
        out["sealed"].append(positioned([(e.sessionid, encode(e)) for e in sealed.events],
                                        offsets["sealed"]))  # fmt: skip
    return out


def run(data: dict[str, list[list[Positioned]]], *, dsn: str, folder: Path,
        tag: str) -> tuple[dict[str, Timings], dict[str, dict[str, float]]]:  # fmt: skip
    """Time both variants, batch by batch; then their storage (bytes per event)."""
    from turnlog.projections.clickhouse.migrate import migrate_clickhouse
    from turnlog.projections.clickhouse.store import connect
    from turnlog.projections.clickhouse.writer import ClickHouseProjection
    from turnlog.projections.postgres.migrate import migrate_postgres
    from turnlog.projections.postgres.writer import PostgresProjection
    from turnlog.streams.decoding import decode_records
    from turnlog.streams.records import RawRecord

    schemas = {v: f"bench_sealproj_{v}_{tag}" for v in VARIANTS}
    timings: dict[str, Timings] = {v: {} for v in VARIANTS}
    store = connect(f"chdb://{folder}")
    chdb = count_chdb_calls(store)
    try:
        for v in VARIANTS:
            migrate_postgres(dsn, schema=schemas[v])
            migrate_clickhouse(store, database=f"bench_{v}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            pg = {v: PostgresProjection(conn, schema=schemas[v], consumer="bench")
                  for v in VARIANTS}  # fmt: skip
            ch = {v: ClickHouseProjection(store, database=f"bench_{v}") for v in VARIANTS}
            raws = {v: [[RawRecord(TOPIC, p, o, k, b, (), None) for p, o, k, b in batch]
                        for batch in data[v]] for v in VARIANTS}  # fmt: skip
            worker_gc()
            for n in range(len(data["plain"])):
                for v in VARIANTS if n % 2 == 0 else VARIANTS[::-1]:
                    keep, t, events = n > 0, timings[v], len(raws[v][n])
                    with timed(t, "decode", events, keep=keep):
                        batch = decode_records(raws[v][n])
                    sources = [d.source for d in batch.events]
                    with timed(t, "postgres", events, keep=keep):
                        applied = pg[v].apply_batch(sources).applied
                    with timed(t, "clickhouse", events, keep=keep, chdb=chdb):
                        written = ch[v].write_batch(sources)
                    if applied != events or written != events:
                        raise SystemExit(f"{v}: applied {applied}, wrote {written} of {events}")
            total = sum(len(b) for b in data["plain"])
            sizes = {v: sizes_of(conn, store, schemas[v], f"bench_{v}", data[v], total)
                     for v in VARIANTS}  # fmt: skip
    finally:
        for v in VARIANTS:
            drop_schema(dsn, schemas[v])
    return timings, sizes


def sizes_of(conn: psycopg.Connection[Any], store: Any, schema: str, database: str,
             data: list[list[Positioned]], total: int) -> dict[str, float]:  # fmt: skip
    """Bytes per event: encoded, PostgreSQL read models (all, personal), ClickHouse."""
    from turnlog.projections.postgres.tables import PERSONAL_TABLES, TABLES

    def pg(tables: Any) -> float:
        query = sql.SQL("SELECT sum(pg_total_relation_size(format('%%I.%%I', %s::text, t)))"
                        " FROM unnest(%s::text[]) t")  # fmt: skip
        row = conn.execute(query, (schema, list(tables))).fetchone()
        return float(row[0] if row else 0) / total

    for (table,) in store.query(f"SELECT name FROM system.tables WHERE database = '{database}' "
                                "AND engine LIKE '%MergeTree'"):  # fmt: skip
        store.command(f"OPTIMIZE TABLE `{database}`.`{table}` FINAL")
    disk, raw = store.query(
        "SELECT sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts "
        f"WHERE database = '{database}' AND active"
    )[0]
    return {
        "log (encoded event)": statistics.fmean(len(r[3]) for b in data for r in b),
        "PostgreSQL read models": pg(TABLES),
        "  of which personal tables": pg(PERSONAL_TABLES),
        "ClickHouse on disk": float(disk) / total,
        "ClickHouse uncompressed": float(raw) / total,
    }


def report(timings: dict[str, Timings], sizes: dict[str, dict[str, float]]) -> None:
    def med(v: str, stages: tuple[str, ...], part: int) -> float:
        return sum(statistics.median(x[part] for x in timings[v][s]) for s in stages)

    print("\n| stage | plain events/s | sealed events/s | sealed ÷ plain | plain Python "
          "µs/event | sealed Python µs/event |\n|---|---:|---:|---:|---:|---:|")
    rows = [*((label, (s,)) for s, label in STAGES.items()),
            ("**PostgreSQL process** (decode + apply)", ("decode", "postgres")),
            ("**ClickHouse process** (decode + write)", ("decode", "clickhouse"))]  # fmt: skip
    for label, stages in rows:
        rate = {v: 1e6 / med(v, stages, 2) for v in VARIANTS}
        print(f"| {label} | {rate['plain']:,.0f} | {rate['sealed']:,.0f} | "
              f"{rate['sealed'] / rate['plain']:.2f} | {med('plain', stages, 0):.1f} | "
              f"{med('sealed', stages, 0):.1f} |")
    print("\n| bytes per event | plain | sealed | sealed ÷ plain |\n|---|---:|---:|---:|")
    for name, plain in sizes["plain"].items():
        sealed = sizes["sealed"][name]
        print(f"| {name} | {plain:,.0f} | {sealed:,.0f} | {sealed / max(plain, 1e-9):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per batch")
    parser.add_argument("--batches", type=int, default=6, help="timed batches (+1 warm-up)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dsn", default=os.environ.get("TURNLOG_POSTGRES_DSN", DEFAULT_DSN))
    args = parser.parse_args()
    from turnlog.infra.stack.config import load_settings
    from turnlog.projections.clickhouse.store import exit_past_chdb_teardown

    print(f"sealed projection: {os.cpu_count()} cores, {args.batches} timed batches of "
          f"{args.events:,} streams_mix events (+1 warm-up) per variant, seed {args.seed}")
    data = batches(args.events, args.batches + 1, seed=args.seed)
    parent = load_settings().state_dir / "bench"
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="sealed-projection-", dir=parent))
    try:
        timings, sizes = run(data, dsn=args.dsn, folder=scratch / "chdb",
                             tag=f"{random.Random().getrandbits(32):08x}")  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(timings, sizes)
    sys.stdout.flush()
    exit_past_chdb_teardown(0)  # chDB's threads may crash in the interpreter's teardown


if __name__ == "__main__":
    main()
