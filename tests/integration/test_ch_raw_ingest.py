"""Rows built by ClickHouse from the raw events (``ingest`` and its materialized views)
equal the rows ``rows.py`` builds in Python, for the shared sessions and for every event
type of the catalog; what the API and the analysts read is the same; and writing events
again, cut differently or from other offsets, with merges stopped, changes no answer."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import unique
from tests.integration.test_ch_fixture_sessions import fixture_events
from tests.unit.test_schemas_codec import model_strategy
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.analyst import analyst_queries, run_readonly_query
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.rows import TABLES, Row, Table, rows_for
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import (
    EVENTS_TOPIC,
    PAYLOAD_MODELS,
    CloudEvent,
    EventPayload,
    agent_source,
    encode,
    new_event,
)

pytestmark = pytest.mark.integration

Event = CloudEvent[Any]
STORED_TABLES = ("events", "turn_facts", "metrics", "usage", "errors", "turn_states",
                 "sessions_1m", "turns_1m")  # fmt: skip
"""Tables merges could change (SYSTEM STOP MERGES applies to them)."""


@contextmanager
def database(store: AnalyticsStore) -> Iterator[str]:
    name = unique("test_")
    migrate_clickhouse(store, database=name)
    try:
        yield name
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{name}`")


def write_rows(store: AnalyticsStore, db: str, events: Sequence[Event]) -> None:
    """The oracle: the rows ``rows.py`` builds, inserted into the base tables as they are
    (the previous write path)."""
    tables: dict[Table, list[Row]] = defaultdict(list)
    for event in events:
        for table, row in rows_for(event):
            tables[table].append(row)
    for table, rows in tables.items():
        store.insert(f"`{db}`.`{table.name}`", rows, column_names=table.columns,
                     settings={"async_insert": 0})  # fmt: skip


def published(events: Sequence[Event], *, partition: int = 0, first: int = 0) -> list[SourceRecord]:
    """The events as consumed records with their published bytes; every third without
    (as if upcast: the writer encodes the event)."""
    return [
        SourceRecord(EVENTS_TOPIC, partition, first + i, e, None if i % 3 == 2 else encode(e))
        for i, e in enumerate(events)
    ]


def table_contents(store: AnalyticsStore, db: str, where: str = "") -> dict[str, list[Row]]:
    """Every row of the base tables (deduplicated: FINAL), in a deterministic order."""
    contents = {}
    for table in TABLES:
        contents[table.name] = store.query(
            f"SELECT {', '.join(table.columns)} FROM `{db}`.`{table.name}` FINAL {where} "
            "ORDER BY ALL"
        )
    return contents


def api_answers(store: AnalyticsStore, db: str, events: Sequence[Event]) -> dict[str, Any]:
    """What every query of ``queries.py`` answers over the events' time span."""
    start = min(e.time for e in events).replace(second=0, microsecond=0) - timedelta(minutes=1)
    end = max(e.time for e in events) + timedelta(minutes=2)
    answers: dict[str, Any] = {
        "latency": queries.latency_percentiles(store, db, start=start, end=end),
        "usage": queries.usage_by_model(store, db, start=start, end=end),
        "overview": queries.overview(store, db, start=start, end=end),
    }
    for session in sorted({e.sessionid for e in events}):
        answers[f"events {session}"] = queries.session_events(store, db, session, limit=10_000)
    return answers


def analyst_answers(store: AnalyticsStore, db: str) -> dict[str, list[Row]]:
    return {
        name: run_readonly_query(store, query.sql, database=db).rows
        for name, query in analyst_queries().items()
    }


def rollup_contents(store: AnalyticsStore, db: str) -> dict[str, list[Row]]:
    """The per-minute rollups, aggregate states finalized."""
    return {
        name: store.query(f"SELECT * EXCEPT ({states}) , {finals} FROM `{db}`.{name} "
                          f"GROUP BY ALL ORDER BY ALL")
        for name, states, finals in (
            ("sessions_1m", "started, closed, failed",
             "uniqExactMerge(started), uniqExactMerge(closed), uniqExactMerge(failed)"),
            ("turns_1m", "turns, interrupted",
             "uniqExactMerge(turns), uniqExactMerge(interrupted)"),
            ("latency_1m", "quantiles_ms", "quantilesTimingMerge(0.5, 0.9, 0.99)(quantiles_ms)"),
        )
    } | {
        name: store.query(f"SELECT * FROM `{db}`.{name} ORDER BY ALL")
        for name in ("errors_1m", "usage_1m")
    }  # fmt: skip


def everything(store: AnalyticsStore, db: str, events: Sequence[Event]) -> dict[str, Any]:
    return {
        "tables": table_contents(store, db),
        "api": api_answers(store, db, events),
        "analyst": analyst_answers(store, db),
        "rollups": rollup_contents(store, db),
        "checksum": queries.checksum(store, db),
    }


# -- the same rows as rows.py -----------------------------------------------------------


def test_the_shared_sessions_give_the_rows_of_rows_py(analytics_store: AnalyticsStore) -> None:
    events = fixture_events(shift_to_now=True)
    with database(analytics_store) as raw, database(analytics_store) as oracle:
        assert ClickHouseProjection(analytics_store, database=raw).write_batch(
            published(events)
        ) == len(events)
        write_rows(analytics_store, oracle, events)
        got, expected = (
            everything(analytics_store, raw, events),
            everything(analytics_store, oracle, events),
        )
        assert all(expected["tables"].values())  # every table has rows to compare
        assert all(expected["analyst"].values())
        for part in ("tables", "api", "analyst", "rollups", "checksum"):
            assert got[part] == expected[part], part


_offsets = count(1_000_000)


@settings(
    max_examples=25,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(PAYLOAD_MODELS).flatmap(model_strategy), min_size=1, max_size=20))
def test_every_event_type_gives_the_rows_of_rows_py(
    analytics_store: AnalyticsStore, ch_database: str, payloads: list[EventPayload]
) -> None:  # fmt: skip
    """Both paths write into one database, each under its own session id."""
    raw_session, oracle_session = str(uuid.uuid4()), str(uuid.uuid4())

    def events(session: str) -> list[Event]:
        return [
            new_event(p, session_id=session, sequence=i, source=agent_source("a", "w"),
                      subject="r", event_id=f"{uuid.UUID(int=i)}",
                      time=datetime.fromisoformat("2026-03-02T09:30:00+00:00"))
            for i, p in enumerate(payloads, start=1)
        ]  # fmt: skip

    raw = events(raw_session)
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(
        published(raw, partition=9, first=next(_offsets) * 100)
    )
    write_rows(analytics_store, ch_database, events(oracle_session))

    def stored(session: str) -> dict[str, list[Row]]:
        """The session's rows, without the session id (the one column that differs)."""
        rows = table_contents(analytics_store, ch_database, f"WHERE session_id = '{session}'")
        without = {t.name: t.columns.index("session_id") for t in TABLES}
        return {t: [r[: without[t]] + r[without[t] + 1 :] for r in v] for t, v in rows.items()}

    assert stored(raw_session) == stored(oracle_session)


# -- exact by design --------------------------------------------------------------------


def stop_merges(store: AnalyticsStore, db: str) -> None:
    for table in STORED_TABLES:
        store.command(f"SYSTEM STOP MERGES `{db}`.`{table}`")


def test_events_written_again_cut_differently_and_at_other_offsets_change_no_answer(
    analytics_store: AnalyticsStore,
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    events = fixture_events(shift_to_now=True)
    with database(analytics_store) as once, database(analytics_store) as again:
        stop_merges(analytics_store, once)
        stop_merges(analytics_store, again)
        ClickHouseProjection(analytics_store, database=once).write_batch(published(events))
        expected = everything(analytics_store, once, events)

        projection = ClickHouseProjection(analytics_store, database=again)
        records = published(events)
        projection.write_batch(records)
        # a crash lost the positions: the same records come back cut at random
        cut = 0
        while cut < len(records):
            size = rng.randint(1, 17)
            projection.insert_events(records[cut : cut + size])
            cut += size
        # a producer retry: the log holds some events twice, at later offsets
        retried = rng.sample(events, len(events) // 3)
        assert projection.write_batch(published(retried, first=len(events) + 100)) == len(retried)
        stored = analytics_store.query(f"SELECT count() FROM `{again}`.events")[0][0]
        assert stored > 2 * len(events)  # the duplicates are there, unmerged

        assert everything(analytics_store, again, events) == expected
