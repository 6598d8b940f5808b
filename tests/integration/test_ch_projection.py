"""The ClickHouse projection on chDB: recorded sessions in, exact tables and rollups out;
retries, restarts and re-cut batches change no answer."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import unique
from tests.unit.test_ch_sessions import START, as_records, recorded_events
from tests.unit.test_schemas_codec import model_strategy
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.rows import DERIVED_TYPES, TABLES
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import PAYLOAD_MODELS, EventPayload, agent_source, new_event

pytestmark = pytest.mark.integration

BASE_TABLES = ("events", "turn_facts", "turn_states", "metrics", "usage", "errors")
ROLLUPS = ("sessions_1m", "turns_1m", "errors_1m", "latency_1m", "usage_1m")
AGGREGATED_ROLLUPS = ("sessions_1m", "turns_1m")
"""The rollups stored as aggregate states; the others are views over the base tables."""


@contextmanager
def another_database(store: AnalyticsStore) -> Iterator[str]:
    name = unique("test_")
    migrate_clickhouse(store, database=name)
    try:
        yield name
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{name}`")


def write(store: AnalyticsStore, db: str, records: Sequence[SourceRecord], size: int) -> int:
    projection = ClickHouseProjection(store, database=db)
    return sum(projection.write_batch(records[i : i + size]) for i in range(0, len(records), size))


def raw_counts(store: AnalyticsStore, db: str) -> dict[str, int]:
    """Rows as stored, duplicates included (no FINAL)."""
    tables = BASE_TABLES + ROLLUPS
    return {t: store.query(f"SELECT count() FROM `{db}`.`{t}`")[0][0] for t in tables}


def stop_merges(store: AnalyticsStore, db: str) -> None:
    """Keep duplicates visible: no background merge may collapse them during the test."""
    for table in BASE_TABLES + AGGREGATED_ROLLUPS:
        store.command(f"SYSTEM STOP MERGES `{db}`.`{table}`")


# -- contents ---------------------------------------------------------------------------


def test_recorded_sessions_fill_the_tables(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    projection = ClickHouseProjection(analytics_store, database=ch_database)
    assert projection.write_batch(as_records(recorded_events(START))) == 41
    db, q = f"`{ch_database}`", analytics_store.query

    assert q(f"SELECT type, count() FROM {db}.events FINAL GROUP BY type ORDER BY type") == [
        ("turnlog.agent.state_changed.v1", 1),
        ("turnlog.conversation.item_added.v1", 6),
        ("turnlog.error.v1", 2),
        ("turnlog.metrics.collected.v1", 12),
        ("turnlog.participant.joined.v1", 1),
        ("turnlog.session.closed.v1", 2),
        ("turnlog.session.started.v1", 2),
        ("turnlog.tools.executed.v1", 1),
        ("turnlog.usage.updated.v1", 3),
        ("turnlog.user.state_changed.v1", 3),
        ("turnlog.user.transcribed.v1", 8),
    ]
    assert q(f"SELECT count() FROM {db}.events WHERE turn_id = 'a-2'") == [(12,)]
    assert projection.positions() == {("turnlog.events", 0): 41}


def test_turns_merge_the_facts_of_each_turn(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(
        as_records(recorded_events(START))
    )
    rows = analytics_store.query(
        f"""SELECT session_id, turn_id, started_at, ended_at, answered, interrupted,
                   user_text, assistant_text, end_of_turn_delay, transcription_delay,
                   stt_time_to_final, llm_ttft, tts_ttfb, e2e_latency, tool_calls,
                   interim_transcripts, final_transcripts, language, transcript_confidence,
                   stt_provider, llm_provider, llm_model, tts_provider, agent_id
            FROM `{ch_database}`.turns ORDER BY session_id, turn_id"""
    )
    at = lambda seconds: START + timedelta(seconds=seconds)  # noqa: E731
    common = ("en", 0.9, "deepgram")
    assert rows == [
        ("sess-a", "a-1", at(2.3), at(4.9), True, False, "What is photosynthesis?",
         "Plants turn light into sugar.", 0.5, 0.25, 0.6, 0.41, 0.2, 1.2, 0, 2, 1, *common,
         "openai", "gpt-4o-mini", "cartesia", "tutor-agent"),
        ("sess-a", "a-2", at(65.0), at(67.0), True, True, "Tell me more.",
         "Sure: leaves hold chlorophyll, which", 0.6, 0.3, 0.6, 0.5, 0.25, 0.9, 1, 2, 1,
         *common, "openai", "gpt-4o-mini", "cartesia", "tutor-agent"),
        ("sess-b", "b-1", at(10.3), at(12.5), True, False, "How far is the moon?",
         "About 384,000 kilometres.", 0.4, 0.2, 0.3, 1.1, 0.3, 2.4, 0, 1, 1, *common,
         "google", "gemini-2.0-flash", "cartesia", "tutor-agent"),
    ]  # fmt: skip


def test_metrics_usage_and_errors(analytics_store: AnalyticsStore, ch_database: str) -> None:
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(
        as_records(recorded_events(START))
    )
    db, q = f"`{ch_database}`", analytics_store.query
    assert q(
        f"""SELECT kind, provider, model, count(), sum(input_tokens), sum(cached_input_tokens),
                   sum(output_tokens), sum(characters_count), round(sum(audio_duration), 3),
                   arraySort(groupArray(ttft)), arraySort(groupArray(ttfb)),
                   round(sum(end_of_utterance_delay), 3)
            FROM {db}.metrics FINAL
            GROUP BY kind, provider, model ORDER BY kind, provider, model"""
    ) == [
        ("eou", "", "", 3, 0, 0, 0, 0, None, [], [], 1.5),
        ("llm", "google", "gemini-2.0-flash", 1, 90, 0, 30, 0, None, [1.1], [], None),
        ("llm", "openai", "gpt-4o-mini", 2, 300, 120, 100, 0, None, [0.41, 0.5], [], None),
        ("stt", "deepgram", "nova-3", 3, 0, 0, 0, 0, 4.5, [], [], None),
        ("tts", "cartesia", "sonic-2", 3, 0, 0, 0, 330, 9.5, [], [0.2, 0.25, 0.3], None),
    ]  # fmt: skip
    # usage.updated is cumulative: the latest event of each session and model wins
    assert q(
        f"""SELECT session_id, kind, provider, sequence, input_tokens, cached_input_tokens,
                   output_tokens, characters_count, audio_duration
            FROM {db}.usage FINAL ORDER BY session_id, kind"""
    ) == [
        ("sess-a", "llm", "openai", 27, 300, 120, 100, 0, 0.0),
        ("sess-a", "stt", "deepgram", 27, 0, 0, 0, 0, 3.0),
        ("sess-a", "tts", "cartesia", 27, 0, 0, 0, 250, 7.0),
        ("sess-b", "llm", "google", 11, 90, 0, 30, 0, 0.0),
        ("sess-b", "stt", "deepgram", 11, 0, 0, 0, 0, 1.5),
        ("sess-b", "tts", "cartesia", 11, 0, 0, 0, 80, 2.5),
    ]
    assert q(
        f"""SELECT session_id, sequence, turn_id, source, provider, error_type, recoverable,
                   status_code FROM {db}.errors FINAL ORDER BY session_id"""
    ) == [
        ("sess-a", 25, "a-2", "llm", "openai", "APIStatusError", True, 429),
        ("sess-b", 12, None, "tts", "cartesia", "APIConnectionError", False, None),
    ]


def test_materialized_views_roll_up_per_minute(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(
        as_records(recorded_events(START))
    )
    window = {"start": START, "end": START + timedelta(minutes=3)}
    minutes = [
        (m.minute, m.sessions_started, m.sessions_closed, m.sessions_failed, m.turns,
         m.interrupted_turns, m.interruption_rate, m.errors)
        for m in queries.overview(analytics_store, ch_database, **window)
    ]  # fmt: skip
    assert minutes == [
        (START, 2, 1, 1, 2, 0, 0.0, 1),
        (START + timedelta(minutes=1), 0, 1, 0, 1, 1, 1.0, 1),
        (START + timedelta(minutes=2), 0, 0, 0, 0, 0, None, 0),
    ]
    latency = [
        (s.stage, s.provider, s.samples, round(s.mean, 4), s.p50, s.p90, s.p99, s.max)
        for s in queries.latency_percentiles(analytics_store, ch_database, **window)
    ]
    # quantilesTiming answers a sample value (the upper one of an even-sized middle)
    assert latency == [
        ("e2e", "google", 1, 2.4, 2.4, 2.4, 2.4, 2.4),
        ("e2e", "openai", 2, 1.05, 1.2, 1.2, 1.2, 1.2),
        ("eou", "deepgram", 3, 0.5, 0.5, 0.6, 0.6, 0.6),
        ("llm", "google", 1, 1.1, 1.1, 1.1, 1.1, 1.1),
        ("llm", "openai", 2, 0.455, 0.5, 0.5, 0.5, 0.5),
        ("stt", "deepgram", 3, 0.25, 0.25, 0.3, 0.3, 0.3),
        ("tts", "cartesia", 3, 0.25, 0.25, 0.3, 0.3, 0.3),
    ]
    assert queries.usage_by_model(analytics_store, ch_database, **window) == [
        queries.UsageStat("llm", "google", "gemini-2.0-flash", 1, 0, 90, 0, 30, 0, 0.0),
        queries.UsageStat("llm", "openai", "gpt-4o-mini", 2, 0, 300, 120, 100, 0, 0.0),
        queries.UsageStat("stt", "deepgram", "nova-3", 3, 0, 0, 0, 0, 0, 4.5),
        queries.UsageStat("tts", "cartesia", "sonic-2", 3, 0, 0, 0, 0, 330, 9.5),
    ]
    earlier = queries.overview(analytics_store, ch_database, start=START - timedelta(minutes=5),
                               end=START)  # fmt: skip
    assert sum(m.turns for m in earlier) == 0


def test_a_session_history_pages_by_sequence(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(
        as_records(recorded_events(START))
    )
    pages, after = [], 0
    while after is not None:
        page = queries.session_events(analytics_store, ch_database, "sess-a", after=after, limit=10)
        pages.append([e.sequence for e in page.events])
        after = page.next_after
    assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 29))]
    first = queries.session_events(analytics_store, ch_database, "sess-a", limit=1).events[0]
    assert (first.type, first.time, first.data["agent_name"]) == (
        "turnlog.session.started.v1", START, "tutor",
    )  # fmt: skip


# -- exactly once -----------------------------------------------------------------------


def test_a_rewritten_batch_changes_no_answer(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    """The position is lost (a crash after the inserts), so the same batch is written
    again: duplicates may be stored, merges are stopped, and every answer stays."""
    stop_merges(analytics_store, ch_database)
    records = as_records(recorded_events(START))
    assert write(analytics_store, ch_database, records, 41) == 41
    digests = queries.checksum(analytics_store, ch_database)
    analytics_store.command(f"TRUNCATE TABLE `{ch_database}`.positions")

    assert write(analytics_store, ch_database, records, 41) == 41  # sent again
    assert queries.checksum(analytics_store, ch_database) == digests

    # a different cut is stored again (the raw count shows it), and still counts once
    analytics_store.command(f"TRUNCATE TABLE `{ch_database}`.positions")
    write(analytics_store, ch_database, records[:10], 10)
    assert raw_counts(analytics_store, ch_database)["events"] > 41
    assert queries.checksum(analytics_store, ch_database) == digests


def test_a_restart_skips_what_was_written(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    records = as_records(recorded_events(START))
    stop_merges(analytics_store, ch_database)
    assert write(analytics_store, ch_database, records[:30], 30) == 30
    assert write(analytics_store, ch_database, records[20:], 5) == 11  # re-read from 20
    assert raw_counts(analytics_store, ch_database)["events"] == 41
    with another_database(analytics_store) as reference:
        write(analytics_store, reference, records, 41)
        assert queries.checksum(analytics_store, ch_database) == queries.checksum(
            analytics_store, reference
        )


def test_shuffled_and_rebatched_sessions_give_the_same_checksum(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    events = recorded_events(START)
    write(analytics_store, ch_database, as_records(events), 41)
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    with another_database(analytics_store) as other:
        write(analytics_store, other, as_records(shuffled, partition=3), 7)
        expected = queries.checksum(analytics_store, ch_database)
        assert queries.checksum(analytics_store, other) == expected
        for table in (*BASE_TABLES, *AGGREGATED_ROLLUPS):
            analytics_store.command(f"OPTIMIZE TABLE `{other}`.`{table}` FINAL")
        assert queries.checksum(analytics_store, other) == expected


def test_a_recut_after_a_lost_position_keeps_every_table_exact(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    """The position of a written batch is lost and the records come back cut
    differently: base tables, distinct counts, sums and histograms stay exact."""
    records = as_records(recorded_events(START))
    stop_merges(analytics_store, ch_database)
    write(analytics_store, ch_database, records[:30], 30)
    analytics_store.command(f"TRUNCATE TABLE `{ch_database}`.positions")
    write(analytics_store, ch_database, records[20:], 6)
    with another_database(analytics_store) as reference:
        write(analytics_store, reference, records, 41)
        assert queries.checksum(analytics_store, ch_database) == queries.checksum(
            analytics_store, reference
        )


_offsets = count(1_000_000)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(PAYLOAD_MODELS).flatmap(model_strategy), min_size=1, max_size=12))
def test_every_event_type_is_stored(
    analytics_store: AnalyticsStore, ch_database: str, payloads: list[EventPayload]
) -> None:  # fmt: skip
    session = str(uuid.uuid4())
    events = [
        new_event(p, session_id=session, sequence=i, source=agent_source("a", "w"), subject="r")
        for i, p in enumerate(payloads, start=1)
    ]
    records = [SourceRecord("turnlog.events", 9, next(_offsets), e) for e in events]
    ClickHouseProjection(analytics_store, database=ch_database).write_batch(records)
    stored = analytics_store.query(
        f"SELECT count() FROM `{ch_database}`.events FINAL WHERE session_id = {{s:String}}",
        parameters={"s": session},
    )
    assert stored == [(sum(e.type not in DERIVED_TYPES for e in events),)]
    assert {t.name for t in TABLES} <= set(queries.CHECKSUM_TABLES)
