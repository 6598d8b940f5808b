"""Throughput of `apply_batch` on the recorded sessions' mix (measured and printed, not
asserted: the number depends on the machine). Run with `-s` to see it."""

from __future__ import annotations

import time
import zlib
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import PgSchema
from tests.integration.test_pg_projection_support import SESSIONS, extra_schema, in_batches
from turnlog.projections.postgres.checksum import checksum
from turnlog.projections.postgres.fold import Fold
from turnlog.projections.postgres.rows import row_ops
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, CloudEvent

pytestmark = pytest.mark.integration

COPIES = 120  # of each recorded session: 360 sessions, 16,800 events
CONCURRENT = 60  # sessions live at once, their events interleaved as in a partition
PARTITIONS = 6


def workload() -> list[SourceRecord]:
    """Copies of the recorded sessions under new ids, interleaved in groups of concurrent
    sessions, spread over partitions by session id, offsets counted per partition."""
    sessions: list[list[CloudEvent[Any]]] = []
    for copy in range(COPIES):
        for name, events in SESSIONS.items():
            sid = f"{name}_{copy:05d}"
            shift = timedelta(minutes=copy)
            sessions.append([
                e.model_copy(update={"sessionid": sid, "partitionkey": sid,
                                     "time": e.time + shift})
                for e in events
            ])
    interleaved: list[CloudEvent[Any]] = []
    for start in range(0, len(sessions), CONCURRENT):
        group = sessions[start:start + CONCURRENT]
        for i in range(max(len(s) for s in group)):
            interleaved += [s[i] for s in group if i < len(s)]
    offsets = [0] * PARTITIONS
    records = []
    for event in interleaved:
        partition = zlib.crc32(event.sessionid.encode()) % PARTITIONS
        records.append(SourceRecord(EVENTS_TOPIC, partition, offsets[partition], event))
        offsets[partition] += 1
    return records


def test_apply_batch_throughput(pg_schema: PgSchema) -> None:
    records = workload()
    started = time.perf_counter()
    fold = Fold()
    for record in records:
        fold.add_all(row_ops(record.event))
    pure = time.perf_counter() - started
    print(f"\n{len(records)} events ({len(records) // (COPIES * len(SESSIONS))} per session "
          f"on average); row_ops + fold alone: {len(records) / pure:,.0f} events/s")

    digests = set()
    for size in (500, 1000, 2000):
        with extra_schema(pg_schema.dsn) as target, target.connect() as conn:
            projection = PostgresProjection(conn, schema=target.name)
            started = time.perf_counter()
            results = [projection.apply_batch(batch) for batch in in_batches(records, size)]
            elapsed = time.perf_counter() - started
            assert sum(r.applied for r in results) == len(records)
            digests.add(tuple(sorted(checksum(conn, target.name).items())))
        print(f"batches of {size:>4}: {len(records) / elapsed:>8,.0f} events/s "
              f"({elapsed / len(results) * 1000:.1f} ms per batch)")
    assert len(digests) == 1  # batch size never changes the read models
