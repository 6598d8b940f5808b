"""The read queries the API serves, one indexed statement each, returning typed rows.

- `list_sessions`: newest first, keyset pagination on (started_at, session_id), filters
  by room, agent, status and start time; each filter has an index in the list's order.
- `session_detail`: the session row, its participants and its latency statistics, all
  read through the primary keys of sessions, participants and messages.
- `transcript`, `tool_calls`, `stt_history`, `stt_turns`: a session's rows through the
  primary key (session_id, ...) of their table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from turnlog.projections.postgres.models import (
    LatencyStats,
    ParticipantRow,
    SessionCursor,
    SessionDetail,
    SessionPage,
    SessionSummary,
    SttTurn,
    ToolCallRow,
    TranscriptEntry,
    TranscriptionRow,
)

MAX_PAGE: Final = 500
SESSION_STATUSES: Final = frozenset({"active", "closed", "failed"})

Connection = psycopg.Connection[Any]


def _columns(names: str, prefix: str = "") -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(*(prefix, n) if prefix else (n,)) for n in names.split()
    )


_SUMMARY: Final = (
    "session_id room agent_name status close_reason started_at ended_at last_event_at "
    "participants user_turns assistant_turns interruptions tool_calls errors"
)


def list_sessions(
    conn: Connection,
    *,
    schema: str = "public",
    room: str | None = None,
    agent: str | None = None,
    status: str | None = None,
    started_from: datetime | None = None,
    started_before: datetime | None = None,
    after: SessionCursor | None = None,
    limit: int = 50,
) -> SessionPage:
    """Sessions newest first; `after` is the previous page's `next_cursor`."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if status is not None and status not in SESSION_STATUSES:
        raise ValueError(f"status must be one of {sorted(SESSION_STATUSES)}, got {status!r}")
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("room", room), ("agent_name", agent), ("status", status)):
        if value is not None:
            conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if started_from is not None:
        conditions.append(sql.SQL("started_at >= %s"))
        params.append(started_from)
    if started_before is not None:
        conditions.append(sql.SQL("started_at < %s"))
        params.append(started_before)
    if after is not None:
        conditions.append(sql.SQL("(started_at, session_id) < (%s, %s)"))
        params += [after.started_at, after.session_id]
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    query = sql.SQL(
        "SELECT {cols} FROM {table}{where} "
        "ORDER BY started_at DESC, session_id DESC LIMIT %s"
    ).format(cols=_columns(_SUMMARY), table=sql.Identifier(schema, "sessions"), where=where)
    with conn.cursor(row_factory=class_row(SessionSummary)) as cur:
        cur.execute(query, [*params, limit + 1])
        items = cur.fetchall()
    more = len(items) > limit
    items = items[:limit]
    return SessionPage(items, items[-1].cursor if more else None)


_DETAIL: Final = """
SELECT {summary}, s.job_id, s.worker_id, s.room_sid, s.agent_id, s.agent_ids,
       s.close_error, EXTRACT(EPOCH FROM s.ended_at - s.started_at)::float8 AS duration_s,
       s.event_count, s.last_sequence, s.false_interruptions, s.handoffs, s.turn_timeouts,
       s.last_error, s.llm_prompt_tokens, s.llm_completion_tokens, s.tts_characters,
       s.stt_audio_s, s.tts_audio_s, s.stt_provider, s.stt_model, s.llm_provider,
       s.llm_model, s.tts_provider, s.tts_model, l.*,
       COALESCE((
           SELECT json_agg(json_build_object(
                      'identity', p.identity, 'kind', p.kind, 'name', p.name, 'sid', p.sid,
                      'joined_at', p.joined_at, 'last_joined_at', p.last_joined_at,
                      'left_at', p.left_at, 'disconnect_reason', p.disconnect_reason,
                      'joins', p.joins,
                      'present', COALESCE(p.joined_seq, 0) > COALESCE(p.left_seq, 0))
                  ORDER BY p.joined_at, p.identity)
           FROM {participants} AS p WHERE p.session_id = s.session_id), '[]'
       ) AS participant_rows
FROM {sessions} AS s
CROSS JOIN LATERAL (
    SELECT count(m.e2e_latency_s) AS measured_turns,
           avg(m.e2e_latency_s) AS e2e_mean_s,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY m.e2e_latency_s) AS e2e_p50_s,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY m.e2e_latency_s) AS e2e_p95_s,
           avg(m.llm_ttft_s) AS llm_ttft_mean_s,
           avg(m.tts_ttfb_s) AS tts_ttfb_mean_s,
           avg(m.end_of_utterance_delay_s) AS end_of_utterance_mean_s,
           avg(m.transcription_delay_s) AS transcription_delay_mean_s
    FROM {messages} AS m WHERE m.session_id = s.session_id
) AS l
WHERE s.session_id = %s
"""


def session_detail(
    conn: Connection, session_id: str, *, schema: str = "public"
) -> SessionDetail | None:
    """The session with its participants and latency statistics; None if unknown."""
    query = sql.SQL(_DETAIL).format(
        summary=_columns(_SUMMARY, "s"),
        sessions=sql.Identifier(schema, "sessions"),
        participants=sql.Identifier(schema, "participants"),
        messages=sql.Identifier(schema, "messages"),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, (session_id,))
        row = cur.fetchone()
    return None if row is None else _detail(row)


def _detail(row: dict[str, Any]) -> SessionDetail:
    summary = SessionSummary(**{name: row[name] for name in _SUMMARY.split()})
    latency = LatencyStats(**{
        name: row[name] for name in LatencyStats.__dataclass_fields__
    })
    models = {
        f"{kind}_{part}": row[f"{kind}_{part}"]
        for kind in ("stt", "llm", "tts") for part in ("provider", "model")
    }
    plain = {
        name: row[name] for name in SessionDetail.__dataclass_fields__
        if name not in {"summary", "latency", "models", "participants"}
    }
    participants = [ParticipantRow.from_json(p) for p in row["participant_rows"]]
    return SessionDetail(
        summary=summary, latency=latency, models=models, participants=participants, **plain
    )


_TRANSCRIPT: Final = (
    "sequence item_id turn_id role text interrupted confidence created_at agent_id "
    "started_speaking_at stopped_speaking_at transcription_delay_s end_of_utterance_delay_s "
    "llm_ttft_s tts_ttfb_s e2e_latency_s"
)


def transcript(
    conn: Connection,
    session_id: str,
    *,
    schema: str = "public",
    after_sequence: int = 0,
    limit: int = MAX_PAGE,
) -> list[TranscriptEntry]:
    """Committed messages in commit order, with interruptions and per-turn latency;
    page on with `after_sequence` = the last entry's sequence."""
    with conn.cursor(row_factory=class_row(TranscriptEntry)) as cur:
        cur.execute(transcript_statement(schema), (session_id, after_sequence, limit))
        return cur.fetchall()


def transcript_statement(schema: str = "public") -> sql.Composed:
    """The statement of `transcript`, parameters (session_id, after_sequence, limit),
    rows `TranscriptEntry`: for callers on an async connection (the API)."""
    return sql.SQL(
        "SELECT {cols} FROM {table} WHERE session_id = %s AND sequence > %s "
        "ORDER BY sequence LIMIT %s"
    ).format(cols=_columns(_TRANSCRIPT), table=sql.Identifier(schema, "messages"))


_TOOL_CALLS: Final = (
    "call_id sequence position turn_id name arguments output is_error duration_s "
    "started_at created_at"
)


def tool_calls(conn: Connection, session_id: str, *, schema: str = "public") -> list[ToolCallRow]:
    """The session's function tool calls, in the order they were reported."""
    query = sql.SQL(
        "SELECT {cols} FROM {table} WHERE session_id = %s ORDER BY sequence, position"
    ).format(cols=_columns(_TOOL_CALLS), table=sql.Identifier(schema, "tool_calls"))
    with conn.cursor(row_factory=class_row(ToolCallRow)) as cur:
        cur.execute(query, (session_id,))
        return cur.fetchall()


def stt_history(
    conn: Connection, session_id: str, *, schema: str = "public", turn_id: str | None = None
) -> list[TranscriptionRow]:
    """Every interim and final STT result of the session (or of one turn), in order."""
    turn = sql.SQL(" AND turn_id = %s") if turn_id is not None else sql.SQL("")
    query = sql.SQL(
        "SELECT sequence, turn_id, is_final, text, language, confidence, speaker_id, "
        "created_at FROM {table} WHERE session_id = %s{turn} ORDER BY sequence"
    ).format(table=sql.Identifier(schema, "transcriptions"), turn=turn)
    params = (session_id,) if turn_id is None else (session_id, turn_id)
    with conn.cursor(row_factory=class_row(TranscriptionRow)) as cur:
        cur.execute(query, params)
        return cur.fetchall()


_STT_TURNS: Final = """
WITH t AS (
    SELECT turn_id, sequence, is_final, text, created_at
    FROM {table} WHERE session_id = %s
), finals AS (
    SELECT turn_id, string_agg(text, ' ' ORDER BY sequence) AS final_text,
           min(created_at) AS first_final_at
    FROM t WHERE is_final GROUP BY turn_id
)
SELECT t.turn_id,
       count(*)::int AS results,
       (count(*) FILTER (WHERE NOT t.is_final))::int AS interims,
       (count(*) FILTER (WHERE t.is_final))::int AS finals,
       (count(*) FILTER (WHERE NOT t.is_final AND starts_with(f.final_text, t.text)))::int
           AS stable_interims,
       min(t.created_at) AS first_result_at,
       f.first_final_at,
       EXTRACT(EPOCH FROM f.first_final_at - min(t.created_at))::float8 AS time_to_final_s,
       f.final_text
FROM t LEFT JOIN finals AS f ON f.turn_id IS NOT DISTINCT FROM t.turn_id
GROUP BY t.turn_id, f.first_final_at, f.final_text
ORDER BY min(t.sequence)
"""


def stt_turns(conn: Connection, session_id: str, *, schema: str = "public") -> list[SttTurn]:
    """Per turn, how its transcript settled: interims, finals, stability, time to final."""
    query = sql.SQL(_STT_TURNS).format(table=sql.Identifier(schema, "transcriptions"))
    with conn.cursor(row_factory=class_row(SttTurn)) as cur:
        cur.execute(query, (session_id,))
        return cur.fetchall()
