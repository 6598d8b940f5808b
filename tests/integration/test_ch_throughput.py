"""How fast the projection writes to chDB: events from consumed records to every table and
rollup, in batches as the streams worker hands them over. Prints the rate; fails only far
below the 20,000 events/s target, since the machine may be shared."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.test_ch_sessions import START, as_records, session_a, session_b
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.schemas import CloudEvent

pytestmark = pytest.mark.integration

SESSIONS = 1000  # pairs of recorded sessions: 41,000 events
BATCH = 10000


def many_sessions() -> list[CloudEvent[Any]]:
    events = []
    for i in range(SESSIONS):
        for e in session_a(START + timedelta(seconds=i)) + session_b(START + timedelta(seconds=i)):
            sid = f"{e.sessionid}-{i}"
            events.append(e.model_copy(update={"sessionid": sid, "partitionkey": sid}))
    return sorted(events, key=lambda e: e.time)


def test_write_throughput(
    analytics_store: AnalyticsStore, ch_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    records = as_records(many_sessions())
    projection = ClickHouseProjection(analytics_store, database=ch_database)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(records), BATCH):
        projection.write_batch(records[i : i + BATCH])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu

    rate = len(records) / elapsed
    with capsys.disabled():
        print(
            f"\nClickHouse projection: {len(records)} events in {elapsed:.2f} s = {rate:,.0f} "
            f"events/s (batches of {BATCH}; {1e6 * cpu / len(records):.0f} µs of CPU per event)"
        )
    assert analytics_store.query(f"SELECT count() FROM `{ch_database}`.events") == [(len(records),)]
    assert rate > 5000
