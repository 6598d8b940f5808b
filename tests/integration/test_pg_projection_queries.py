"""The API's read queries over the recorded sessions, and the plans that serve them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PgSchema
from tests.integration.test_pg_projection_support import LOG_BATCH, log, utc
from turnlog.projections.postgres import queries
from turnlog.projections.postgres.models import SessionCursor
from turnlog.projections.postgres.writer import PostgresProjection

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(pg_schema: PgSchema) -> Iterator[psycopg.Connection[Any]]:
    with pg_schema.connect() as conn:
        projection = PostgresProjection(conn, schema=pg_schema.name)
        records = log()
        for start in range(0, len(records), LOG_BATCH):
            projection.apply_batch(records[start:start + LOG_BATCH])
        yield conn


def test_session_list_newest_first_with_filters(
    conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    def ids(**filters: Any) -> list[str]:
        page = queries.list_sessions(conn, schema=pg_schema.name, **filters)
        return [s.session_id for s in page.items]

    assert ids() == ["sess_support_handoff", "sess_tutor_failed", "sess_tutor_happy"]
    assert ids(agent="tutor") == ["sess_tutor_failed", "sess_tutor_happy"]
    assert ids(room="math-room-1") == ["sess_tutor_happy"]
    assert ids(status="failed") == ["sess_tutor_failed"]
    assert ids(agent="tutor", status="closed") == ["sess_tutor_happy"]
    assert ids(started_from=utc(2025, 3, 3, 10), started_before=utc(2025, 3, 4)) == [
        "sess_tutor_failed"]
    assert ids(room="nowhere") == []


def test_session_list_pages_by_keyset(conn: psycopg.Connection[Any], pg_schema: PgSchema) -> None:
    seen: list[str] = []
    cursor: SessionCursor | None = None
    for _ in range(5):
        page = queries.list_sessions(conn, schema=pg_schema.name, limit=1, after=cursor)
        seen += [s.session_id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = SessionCursor.decode(page.next_cursor.encode())
    assert seen == ["sess_support_handoff", "sess_tutor_failed", "sess_tutor_happy"]
    first = queries.list_sessions(conn, schema=pg_schema.name, limit=1).items[0]
    assert (first.status, first.participants, first.user_turns, first.tool_calls) == (
        "closed", ["caller-42", "supervisor-1"], 2, 2)


def test_session_list_refuses_bad_arguments(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValueError, match="limit must be between 1 and 500, got 0"):
        queries.list_sessions(conn, limit=0)
    with pytest.raises(ValueError, match="status must be one of"):
        queries.list_sessions(conn, status="done")
    with pytest.raises(ValueError, match="invalid session cursor"):
        SessionCursor.decode("not-a-cursor")


def test_session_detail_with_counts_latency_and_participants(
    conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    detail = queries.session_detail(conn, "sess_tutor_happy", schema=pg_schema.name)

    assert detail is not None
    assert (detail.summary.user_turns, detail.summary.assistant_turns) == (4, 4)
    assert (detail.summary.interruptions, detail.false_interruptions) == (1, 1)
    assert (detail.duration_s, detail.event_count, detail.last_sequence) == (22.56, 68, 68)
    assert (detail.llm_prompt_tokens, detail.tts_characters) == (2000, 149)
    assert detail.models["llm_model"] == "gpt-4o-mini"
    latency = detail.latency
    assert latency.measured_turns == 4
    assert latency.e2e_mean_s == pytest.approx((0.82 + 1.35 + 0.77 + 0.69) / 4)
    assert latency.e2e_p50_s == pytest.approx((0.77 + 0.82) / 2)
    assert (latency.llm_ttft_mean_s, latency.end_of_utterance_mean_s) == (0.41, 0.3)
    [student] = detail.participants
    assert (student.identity, student.name, student.present) == ("student-1", "Ada", False)
    assert student.left_at == utc(2025, 3, 3, 9, 0, 22, 460000)


def test_session_detail_of_a_reconnecting_caller_and_a_failed_session(
    conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    support = queries.session_detail(conn, "sess_support_handoff", schema=pg_schema.name)
    failed = queries.session_detail(conn, "sess_tutor_failed", schema=pg_schema.name)

    assert support is not None
    assert failed is not None
    assert [(p.identity, p.joins, p.sid, p.present) for p in support.participants] == [
        ("caller-42", 2, "PA_c2", True), ("supervisor-1", 1, "PA_sup", False)]
    assert (support.agent_id, support.agent_ids, support.handoffs) == (
        "billing", ["billing", "greeter"], 1)
    assert (failed.summary.status, failed.close_error, failed.summary.errors) == (
        "failed", "tts connection closed", 2)
    assert failed.latency.measured_turns == 1
    assert queries.session_detail(conn, "no-such-session", schema=pg_schema.name) is None


def test_transcript_in_commit_order_with_interruption_and_latency(
    conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    entries = queries.transcript(conn, "sess_tutor_happy", schema=pg_schema.name)

    assert [(e.role, e.text, e.interrupted) for e in entries[4:6]] == [
        ("user", "tell me about prime numbers", False),
        ("assistant", "A prime number has exactly two", True),
    ]
    assert [e.e2e_latency_s for e in entries if e.role == "assistant"] == [0.82, 1.35, 0.77, 0.69]
    assert entries[0].confidence == 0.94
    rest = queries.transcript(conn, "sess_tutor_happy", schema=pg_schema.name,
                              after_sequence=entries[5].sequence, limit=10)
    assert rest == entries[6:]


def test_tool_calls_in_reported_order(conn: psycopg.Connection[Any], pg_schema: PgSchema) -> None:
    calls = queries.tool_calls(conn, "sess_tutor_happy", schema=pg_schema.name)

    assert [(c.name, c.is_error, c.duration_s) for c in calls] == [
        ("lookup_homework", False, 0.12), ("grade", True, 0.002)]
    assert calls[1].arguments == '{"answers": [56, 42'  # invalid JSON, kept as it came


def test_stt_history_and_transcript_stability(
    conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    history = queries.stt_history(conn, "sess_tutor_happy", schema=pg_schema.name,
                                  turn_id="turn_3")
    turns = queries.stt_turns(conn, "sess_tutor_happy", schema=pg_schema.name)

    assert [(h.text, h.is_final) for h in history] == [
        ("tell me", False), ("tell me a bout", False), ("tell me about prime numbers", True)]
    assert len(queries.stt_history(conn, "sess_tutor_happy", schema=pg_schema.name)) == 11
    assert [(t.turn_id, t.interims, t.stable_interims, t.finals) for t in turns] == [
        ("turn_1", 2, 2, 1), ("turn_2", 2, 2, 1), ("turn_3", 2, 1, 1), ("turn_4", 1, 1, 1)]
    assert turns[2].time_to_final_s == 1.15
    assert turns[2].final_text == "tell me about prime numbers"


# plans -------------------------------------------------------------------------------

SYNTHETIC_SESSIONS = 20_000
MESSAGES_PER_SESSION = 10


def _fill(conn: psycopg.Connection[Any], schema: str) -> None:
    """Bulk rows straight in SQL (the projector is measured elsewhere): enough for the
    planner to prefer indexes, as it will at 100,000 sessions."""
    s = sql.Identifier(schema)
    conn.execute(sql.SQL(
        "INSERT INTO {}.sessions (session_id, room, agent_name, status, started_at) "
        "SELECT 'syn_' || i, 'room_' || (i %% 500), 'agent_' || (i %% 7), "
        "CASE WHEN i %% 50 = 0 THEN 'active' ELSE 'closed' END, "
        "timestamptz '2025-01-01' + i * interval '1 minute' "
        "FROM generate_series(1, %s) AS i").format(s), (SYNTHETIC_SESSIONS,))
    conn.execute(sql.SQL(
        "INSERT INTO {}.messages (session_id, sequence, role, text, created_at) "
        "SELECT 'syn_' || i, m, CASE WHEN m %% 2 = 0 THEN 'assistant' ELSE 'user' END, "
        "'synthetic message text', timestamptz '2025-01-01' "
        "FROM generate_series(1, %s) AS i, generate_series(1, %s) AS m"
    ).format(s), (SYNTHETIC_SESSIONS, MESSAGES_PER_SESSION))
    conn.execute(sql.SQL("ANALYZE {}.sessions").format(s))
    conn.execute(sql.SQL("ANALYZE {}.messages").format(s))


def _plan(conn: psycopg.Connection[Any], query: sql.Composable, params: tuple[Any, ...]) -> str:
    rows = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def test_api_reads_are_single_index_scans(
    conn: psycopg.Connection[Any], pg_schema: PgSchema
) -> None:
    _fill(conn, pg_schema.name)
    s = pg_schema.name
    keyset = "(started_at, session_id) < (%s, %s) ORDER BY started_at DESC, session_id DESC"
    after = (utc(2025, 1, 5), "syn_5000")
    sessions, messages = sql.Identifier(s, "sessions"), sql.Identifier(s, "messages")
    plans = {
        "list": (sql.SQL("SELECT session_id FROM {} WHERE " + keyset + " LIMIT 51"), after),
        "list by room": (
            sql.SQL("SELECT session_id FROM {} WHERE room = %s AND " + keyset + " LIMIT 51"),
            ("room_7", *after)),
        "list by agent": (
            sql.SQL("SELECT session_id FROM {} WHERE agent_name = %s AND " + keyset + " LIMIT 51"),
            ("agent_3", *after)),
        "transcript": (sql.SQL(
            "SELECT * FROM {} WHERE session_id = %s AND sequence > 0 ORDER BY sequence LIMIT 500"
        ), ("syn_77",)),
    }
    for name, (query, params) in plans.items():
        table = messages if name == "transcript" else sessions
        plan = _plan(conn, query.format(table), params)
        assert "Index" in plan, (name, plan)
        assert "Seq Scan" not in plan, (name, plan)
        if name == "list":  # newest first straight from the index, however many sessions
            assert "Sort" not in plan, (name, plan)

    timings = []
    for i in range(200):
        started = time.perf_counter()
        queries.transcript(conn, f"syn_{i * 97 % SYNTHETIC_SESSIONS + 1}", schema=s)
        timings.append(time.perf_counter() - started)
    timings.sort()
    print(f"\ntranscript over {SYNTHETIC_SESSIONS} sessions / "
          f"{SYNTHETIC_SESSIONS * MESSAGES_PER_SESSION} messages: "
          f"p50 {timings[100] * 1000:.2f} ms, p99 {timings[197] * 1000:.2f} ms")
