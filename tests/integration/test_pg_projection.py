"""The PostgreSQL projection against the real database: read models, idempotency, order
independence, atomic offsets, rebuild."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from tests.conftest import PgSchema
from tests.integration.test_pg_projection_support import (
    SESSIONS,
    count,
    extra_schema,
    in_batches,
    log,
    rows,
    utc,
)
from turnlog.projections.postgres.checksum import checksum
from turnlog.projections.postgres.errors import ProjectionWriteError
from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, TURNS_TOPIC, TurnCompleted, new_event, stream_source

pytestmark = pytest.mark.integration

LOG = log()
TABLE_NAMES = ("sessions", "participants", "messages", "tool_calls", "transcriptions")


@pytest.fixture
def conn(pg_schema: PgSchema) -> Iterator[psycopg.Connection[Any]]:
    with pg_schema.connect() as conn:
        yield conn


@pytest.fixture
def projection(pg_schema: PgSchema, conn: psycopg.Connection[Any]) -> PostgresProjection:
    return PostgresProjection(conn, schema=pg_schema.name)


def apply_all(projection: PostgresProjection, records: Sequence[SourceRecord], size: int) -> None:
    for batch in in_batches(list(records), size):
        projection.apply_batch(batch)


def pick(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: row[name] for name in names}


def test_read_models_equal_the_recorded_sessions(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    apply_all(projection, LOG, 25)
    sessions = {r["session_id"]: r for r in rows(conn, pg_schema.name, "sessions")}

    assert pick(sessions["sess_tutor_happy"], "room", "agent_name", "job_id", "status",
                "close_reason", "started_at", "ended_at", "event_count", "last_sequence",
                "user_turns", "assistant_turns", "interruptions", "tool_calls", "errors",
                "false_interruptions", "handoffs", "turn_timeouts", "participants",
                "agent_id", "agent_ids", "llm_prompt_tokens", "llm_completion_tokens",
                "tts_characters", "stt_audio_s", "close_error", "last_error") == {
        "room": "math-room-1", "agent_name": "tutor", "job_id": "AJ_sess_tutor_happy",
        "status": "closed", "close_reason": "participant_disconnected",
        "started_at": utc(2025, 3, 3, 9, 0, 0), "ended_at": utc(2025, 3, 3, 9, 0, 22, 560000),
        "event_count": 68, "last_sequence": 68, "user_turns": 4, "assistant_turns": 4,
        "interruptions": 1, "tool_calls": 2, "errors": 0, "false_interruptions": 1,
        "handoffs": 0, "turn_timeouts": 0, "participants": ("student-1",),
        "agent_id": "tutor_agent", "agent_ids": ("tutor_agent",), "llm_prompt_tokens": 2000,
        "llm_completion_tokens": 160, "tts_characters": 149, "stt_audio_s": 4.8,
        "close_error": None, "last_error": None,
    }
    assert pick(sessions["sess_tutor_failed"], "status", "close_reason", "close_error",
                "errors", "last_error", "last_error_source", "user_turns", "assistant_turns",
                "turn_timeouts", "event_count", "ended_at") == {
        "status": "failed", "close_reason": "error", "close_error": "tts connection closed",
        "errors": 2, "last_error": "tts connection closed", "last_error_source": "tts",
        "user_turns": 2, "assistant_turns": 1, "turn_timeouts": 1, "event_count": 26,
        "ended_at": utc(2025, 3, 3, 10, 30, 14, 560000),
    }
    assert pick(sessions["sess_support_handoff"], "agent_name", "status", "close_reason",
                "agent_id", "agent_ids", "handoffs", "participants", "tool_calls",
                "user_turns", "assistant_turns", "started_at", "event_count") == {
        "agent_name": "support", "status": "closed", "close_reason": "user_initiated",
        "agent_id": "billing", "agent_ids": ("billing", "greeter"), "handoffs": 1,
        "participants": ("caller-42", "supervisor-1"), "tool_calls": 2, "user_turns": 2,
        "assistant_turns": 2, "started_at": utc(2025, 3, 4, 14, 5, 30, 250000),
        "event_count": 46,
    }


def test_participants_with_a_reconnect(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    apply_all(projection, LOG, 40)

    people = [pick(r, "session_id", "identity", "joins", "sid", "joined_at", "left_at",
                   "disconnect_reason", "joined_seq", "left_seq")
              for r in rows(conn, pg_schema.name, "participants")]
    assert people == [
        {"session_id": "sess_support_handoff", "identity": "caller-42", "joins": 2,
         "sid": "PA_c2", "joined_at": utc(2025, 3, 4, 14, 5, 30, 370000),
         "left_at": utc(2025, 3, 4, 14, 5, 36, 110000), "disconnect_reason": "signal_close",
         "joined_seq": 22, "left_seq": 21},
        {"session_id": "sess_support_handoff", "identity": "supervisor-1", "joins": 1,
         "sid": "PA_sup", "joined_at": utc(2025, 3, 4, 14, 5, 38, 90000),
         "left_at": utc(2025, 3, 4, 14, 5, 43, 630000), "disconnect_reason": None,
         "joined_seq": 23, "left_seq": 45},
        {"session_id": "sess_tutor_failed", "identity": "student-2", "joins": 1,
         "sid": "PA_s2", "joined_at": utc(2025, 3, 3, 10, 30, 0, 80000), "left_at": None,
         "disconnect_reason": None, "joined_seq": 2, "left_seq": None},
        {"session_id": "sess_tutor_happy", "identity": "student-1", "joins": 1,
         "sid": "PA_s1", "joined_at": utc(2025, 3, 3, 9, 0, 0, 100000),
         "left_at": utc(2025, 3, 3, 9, 0, 22, 460000), "disconnect_reason": "client_initiated",
         "joined_seq": 2, "left_seq": 67},
    ]


def test_tool_calls_messages_and_stt_history(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    apply_all(projection, LOG, 40)

    calls = [pick(r, "call_id", "sequence", "position", "name", "arguments", "is_error")
             for r in rows(conn, pg_schema.name, "tool_calls")]
    assert calls == [
        {"call_id": "call_inv", "sequence": 38, "position": 0, "name": "find_invoice",
         "arguments": '{"month": "2025-02"}', "is_error": False},
        {"call_id": "call_pay", "sequence": 38, "position": 1, "name": "find_payments",
         "arguments": '{"month": "2025-02"}', "is_error": False},
        {"call_id": "call_grade_1", "sequence": 30, "position": 1, "name": "grade",
         "arguments": '{"answers": [56, 42', "is_error": True},
        {"call_id": "call_hw_1", "sequence": 30, "position": 0, "name": "lookup_homework",
         "arguments": '{"student": "Ada"}', "is_error": False},
    ]
    happy = [r for r in rows(conn, pg_schema.name, "messages")
             if r["session_id"] == "sess_tutor_happy"]
    assert [(r["sequence"], r["role"], r["interrupted"]) for r in happy] == [
        (10, "user", False), (16, "assistant", False), (26, "user", False),
        (33, "assistant", False), (42, "user", False), (49, "assistant", True),
        (57, "user", False), (64, "assistant", False),
    ]
    assert pick(happy[5], "text", "e2e_latency_s", "llm_ttft_s", "tts_ttfb_s", "agent_id",
                "provider_request_ids") == {
        "text": "A prime number has exactly two", "e2e_latency_s": 0.77, "llm_ttft_s": 0.41,
        "tts_ttfb_s": 0.18, "agent_id": "tutor_agent", "provider_request_ids": ("req_turn_3",),
    }
    assert pick(happy[0], "confidence", "transcription_delay_s", "end_of_utterance_delay_s") == {
        "confidence": 0.94, "transcription_delay_s": 0.25, "end_of_utterance_delay_s": 0.3}
    stt = rows(conn, pg_schema.name, "transcriptions")
    assert len(stt) == 20
    assert sum(r["is_final"] for r in stt) == 8
    assert [(r["sequence"], r["text"], r["is_final"]) for r in stt
            if r["session_id"] == "sess_tutor_happy" and r["turn_id"] == "turn_3"] == [
        (37, "tell me", False), (38, "tell me a bout", False),
        (40, "tell me about prime numbers", True),
    ]


def test_postgres_rows_equal_the_in_memory_model(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    model = InMemoryProjection()
    for batch in in_batches(LOG, 33):
        model.apply_batch(batch)
        projection.apply_batch(batch)

    for table in TABLE_NAMES:
        assert rows(conn, pg_schema.name, table) == model.rows(table), table


def test_the_same_events_twice_change_nothing(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    apply_all(projection, LOG, 50)
    before = checksum(conn, pg_schema.name)
    offsets = projection.committed_offsets(EVENTS_TOPIC)

    again = [projection.apply_batch(b) for b in in_batches(LOG, 64)]

    assert sum(r.applied for r in again) == 0
    assert sum(r.skipped_duplicates for r in again) == len(LOG)
    assert checksum(conn, pg_schema.name) == before
    assert projection.committed_offsets(EVENTS_TOPIC) == offsets == {0: 114, 1: 26}
    assert count(conn, pg_schema.name, "applied_events") == len(LOG)


def test_shuffled_sessions_in_other_batches_give_the_same_checksum(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    apply_all(projection, LOG, 25)
    expected = checksum(conn, pg_schema.name)
    rng = random.Random(20250303)
    for attempt in range(3):
        events = [e for es in SESSIONS.values() for e in es]
        rng.shuffle(events)  # within and across sessions
        events += rng.sample(events, 15)  # and a few delivered twice
        with extra_schema(pg_schema.dsn) as other, other.connect() as other_conn:
            shuffled = PostgresProjection(other_conn, schema=other.name)
            apply_all(shuffled, log(events), rng.randint(1, 60))
            assert checksum(other_conn, other.name) == expected, f"attempt {attempt}"


def test_rebuild_from_offset_zero_matches_live_state(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    # live: small batches, and a consumer restart that replays from an older offset
    apply_all(projection, LOG[:70], 7)
    apply_all(projection, LOG[40:], 9)
    with extra_schema(pg_schema.dsn) as rebuilt, rebuilt.connect() as rebuilt_conn:
        rebuild = PostgresProjection(rebuilt_conn, schema=rebuilt.name, consumer="pg-rebuild")
        apply_all(rebuild, LOG, 500)

        assert checksum(rebuilt_conn, rebuilt.name) == checksum(conn, pg_schema.name)
        assert rebuild.committed_offsets(EVENTS_TOPIC) == {0: 114, 1: 26}


class CrashAfterRows(PostgresProjection):
    """Dies inside the transaction once rows and offsets are written, before commit."""

    def _write_offsets(self, cur: psycopg.Cursor[Any], offsets: Any) -> None:
        super()._write_offsets(cur, offsets)
        raise RuntimeError("killed before commit")


def test_a_crash_inside_the_transaction_leaves_nothing_not_even_offsets(
    conn: psycopg.Connection[Any], pg_schema: PgSchema, projection: PostgresProjection
) -> None:
    crashing = CrashAfterRows(conn, schema=pg_schema.name)

    with pytest.raises(RuntimeError, match="killed before commit"):
        crashing.apply_batch(LOG[:60])

    for table in (*TABLE_NAMES, "applied_events", "consumer_offsets"):
        assert count(conn, pg_schema.name, table) == 0, table
    assert projection.committed_offsets(EVENTS_TOPIC) == {}
    result = projection.apply_batch(LOG[:60])
    assert (result.applied, result.skipped_duplicates) == (60, 0)
    assert projection.committed_offsets(EVENTS_TOPIC) == {0: 60}


def test_a_batch_with_duplicates_within_itself(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    batch = [*LOG, *LOG[:10], *LOG[5:15]]

    result = projection.apply_batch(batch)

    assert (result.applied, result.skipped_duplicates) == (len(LOG), 20)
    assert result.rows == {"sessions": 3, "participants": 4, "messages": 15,
                           "tool_calls": 4, "transcriptions": 20}
    model = InMemoryProjection()
    model.apply_batch(LOG)
    assert rows(conn, pg_schema.name, "sessions") == model.rows("sessions")


def test_derived_records_are_ignored_but_their_offsets_count(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    source = LOG[0].event
    derived = new_event(TurnCompleted(turn_id="turn_1", interrupted=False),
                        session_id=source.sessionid, sequence=source.sequence,
                        source=stream_source("turnlog", "turns"), subject=source.subject)

    result = projection.apply_batch([SourceRecord(TURNS_TOPIC, 3, 41, derived)])
    after = projection.apply_batch(LOG[:1])

    assert (result.applied, result.ignored) == (0, 1)
    assert projection.committed_offsets(TURNS_TOPIC) == {3: 42}
    assert after.applied == 1  # same (sessionid, sequence): the ledger never saw the record


def test_offsets_are_per_consumer_and_never_move_backwards(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    projection.apply_batch(LOG[20:30])
    projection.apply_batch(LOG[:20])  # a late commit of an older batch
    other = PostgresProjection(conn, schema=pg_schema.name, consumer="someone-else")

    assert projection.committed_offsets(EVENTS_TOPIC) == {0: 30}
    assert other.committed_offsets(EVENTS_TOPIC) == {}
    assert projection.committed_offsets("unknown-topic") == {}


def test_a_connection_inside_a_transaction_is_refused(pg_schema: PgSchema) -> None:
    with pg_schema.connect() as conn:
        conn.autocommit = False
        conn.execute("SELECT 1")
        projection = PostgresProjection(conn, schema=pg_schema.name)
        with pytest.raises(ProjectionWriteError, match="inside a transaction"):
            projection.apply_batch(LOG[:1])


def test_a_dsn_gives_the_projection_its_own_connection(pg_schema: PgSchema) -> None:
    with PostgresProjection(pg_schema.dsn, schema=pg_schema.name) as projection:
        assert projection.apply_batch(LOG[:5]).applied == 5
        assert projection.committed_offsets(EVENTS_TOPIC) == {0: 5}


def test_database_failures_are_translated_and_say_whether_to_retry(
    pg_schema: PgSchema, conn: psycopg.Connection[Any]
) -> None:
    missing = PostgresProjection(conn, schema="no_such_schema")
    with pytest.raises(ProjectionWriteError, match="no_such_schema") as caught:
        missing.apply_batch(LOG[:3])
    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)
