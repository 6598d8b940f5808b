"""The shared recorded sessions (tests/fixtures/sessions/*.jsonl) through the ClickHouse
projection: what they promise shows in the tables, and the example queries answer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import unique
from tests.fixtures.make_sessions import load
from tests.unit.test_ch_sessions import as_records
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.analyst import analyst_queries, run_readonly_query
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.schemas import CloudEvent

pytestmark = pytest.mark.integration


def fixture_events(shift_to_now: bool = False) -> list[CloudEvent[Any]]:
    events = sorted((e for session in load().values() for e in session), key=lambda e: e.time)
    if not shift_to_now:
        return events
    # whole minutes, so the rollups' minutes stay the fixtures' minutes, moved to the last hour
    shift = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    delta = shift - events[0].time.replace(second=0, microsecond=0)
    return [e.model_copy(update={"time": e.time + delta}) for e in events]


def test_the_shared_sessions_show_what_they_promise(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    events = fixture_events()
    projection = ClickHouseProjection(analytics_store, database=ch_database)
    assert projection.write_batch(as_records(events)) == len(events)
    turns = analytics_store.query(
        f"""SELECT session_id, count(), countIf(answered), countIf(interrupted)
            FROM `{ch_database}`.turns GROUP BY session_id ORDER BY session_id"""
    )
    by_session = {sid: (n, answered, interrupted) for sid, n, answered, interrupted in turns}
    assert by_session["sess_tutor_happy"] == (4, 4, 1)  # four turns, an interrupted answer
    assert by_session["sess_tutor_failed"][0] == 2  # its third turn only timed out: no facts
    start, end = events[0].time - timedelta(minutes=1), events[-1].time + timedelta(minutes=1)
    minutes = queries.overview(analytics_store, ch_database, start=start, end=end)
    assert sum(m.sessions_started for m in minutes) == 3
    assert sum(m.sessions_failed for m in minutes) == 1  # tutor_failed closes on an error
    assert sum(m.errors for m in minutes) == 2
    assert sum(m.turns for m in minutes) == sum(a for _, a, _ in by_session.values())


def test_the_shared_sessions_rebuild_to_the_same_checksum(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    events = fixture_events()
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(as_records(events))
    shuffled = events[:]
    random.Random(11).shuffle(shuffled)
    records = as_records(shuffled, partition=5)
    other = unique("test_")
    migrate_clickhouse(analytics_store, database=other)
    try:
        projection = ClickHouseProjection(analytics_store, database=other)
        for i in range(0, len(records), 5):
            projection.write_batch(records[i : i + 5])
        assert queries.checksum(analytics_store, other) == queries.checksum(
            analytics_store, ch_database
        )
    finally:
        analytics_store.command(f"DROP DATABASE IF EXISTS `{other}`")


def test_the_example_queries_answer_on_the_shared_sessions(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(
        as_records(fixture_events(shift_to_now=True))
    )
    results = {
        name: run_readonly_query(analytics_store, query.sql, database=ch_database)
        for name, query in analyst_queries().items()
    }
    assert all(r.rows and not r.truncated for r in results.values())
    for stage, _provider, _model, measured, _mean, p50, p90, p99 in results[
        "latency_percentiles_by_provider"
    ].rows:
        assert stage in ("eou", "stt", "llm", "tts", "e2e")
        assert measured > 0
        assert 0 <= p50 <= p90 <= p99
    e2e = [row[3] for row in results["slowest_turns"].rows]
    assert e2e == sorted(e2e, reverse=True)
    for _hour, answered, interrupted, rate in results["interruption_rate"].rows:
        assert 0 <= interrupted <= answered
        assert 0 <= rate <= 1
    assert {row[0] for row in results["usage_per_session"].rows} == {
        "sess_tutor_happy", "sess_tutor_failed", "sess_support_handoff",
    }  # fmt: skip
    for _language, interims, stable_share, revision in results["transcript_stability"].rows:
        assert interims > 0
        assert 0 <= stable_share <= 1
        assert 0 <= revision <= 1
