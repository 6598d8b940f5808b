"""Derived records for `turnlog.turns` and `turnlog.sessions`, built from read-model rows.

Pure functions, no I/O: the processor reads the rows back from PostgreSQL after a batch's
commit (`state`), so a live worker and a rebuild, whatever their batches, derive the same
records from the same state.

- `TurnCompleted`, for a turn (session id, turn id) with at least one assistant message:
  the user message is the turn's first, the agent's answer its assistant messages (texts
  joined). Single values (item id, agent, when the agent spoke) come from the first
  assistant message, as the ClickHouse `turns` view has it; each latency is the first one
  measured, user message first (LiveKit puts end-of-turn and transcription delays on the
  user message, LLM, TTS and end-to-end latencies on the assistant's). Language from the
  turn's latest final transcript; models from the session (the messages table keeps no
  per-message models).
- `SessionSummarized`, for a closed session whose `session.started` was applied.

Envelope: the session's id, room and key; `sequence` = the source event's (the turn's last
assistant message, the session's `session.closed`); `time` = when that happened; `id` =
`derived_event_id` of the record's identity and a digest of its payload: the same facts
always give the same id (a re-emission after a crash dedupes downstream), and a record
that changed (a late user message completing a turn) gets a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from turnlog.schemas import (
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    EventPayload,
    ModelInfo,
    SessionSummarized,
    TurnCompleted,
    derived_event_id,
    encode,
    new_event,
    stream_source,
)
from turnlog.streams.records import OutRecord

Row = Mapping[str, Any]

APP_NAME: Final = "turnlog"
TURNS_SOURCE: Final = stream_source(APP_NAME, "turns")
SESSIONS_SOURCE: Final = stream_source(APP_NAME, "sessions")
CONTENT_TYPE_HEADER: Final = ("content-type", STRUCTURED_CONTENT_TYPE.encode())

_LATENCIES: Final = (
    ("end_of_turn_delay", "end_of_utterance_delay_s"),
    ("transcription_delay", "transcription_delay_s"),
    ("on_user_turn_completed_delay", "on_user_turn_completed_delay_s"),
    ("llm_node_ttft", "llm_ttft_s"),
    ("llm_node_ttfs", "llm_ttfs_s"),
    ("tts_node_ttfb", "tts_ttfb_s"),
    ("playback_latency", "playback_latency_s"),
    ("e2e_latency", "e2e_latency_s"),
)
"""TurnCompleted field -> messages column."""


@dataclass(frozen=True, slots=True)
class TurnRows:
    """What the read models hold about one turn."""

    session: Row
    """The session's row."""
    messages: Sequence[Row]
    """The turn's messages (any order)."""
    tool_calls: int = 0
    """Tool calls of the turn."""
    language: str | None = None
    """Language of the turn's latest final transcript."""


@dataclass(frozen=True, slots=True)
class SessionRows:
    """What the read models hold about one session."""

    session: Row
    turns: int
    """Turns with an assistant message."""


def turn_completed(rows: TurnRows) -> CloudEvent[TurnCompleted] | None:
    """The turn's record; None while it has no assistant message."""
    messages = sorted(rows.messages, key=lambda m: m["sequence"])
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        return None
    users = [m for m in messages if m["role"] == "user"]
    user = users[0] if users else None
    first, last = answers[0], answers[-1]
    measured = [m for m in (user, *answers) if m is not None]
    payload = TurnCompleted(
        turn_id=str(first["turn_id"]),
        interrupted=any(bool(m["interrupted"]) for m in answers),
        user_text=None if user is None else user["text"],
        assistant_text=" ".join(m["text"] for m in answers),
        user_item_id=None if user is None else user["item_id"],
        assistant_item_id=first["item_id"],
        agent_id=first["agent_id"],
        language=rows.language,
        transcript_confidence=None if user is None else user["confidence"],
        user_started_speaking_at=None if user is None else user["started_speaking_at"],
        user_stopped_speaking_at=None if user is None else user["stopped_speaking_at"],
        agent_started_speaking_at=first["started_speaking_at"],
        tool_call_count=rows.tool_calls,
        stt=_model(rows.session, "stt"),
        llm=_model(rows.session, "llm"),
        tts=_model(rows.session, "tts"),
        **{field: _first(measured, column) for field, column in _LATENCIES},
    )
    return _envelope(
        payload, rows.session, sequence=int(last["sequence"]), time=last["created_at"],
        source=TURNS_SOURCE, identity=f"turn/{payload.turn_id}",
    )  # fmt: skip


def session_summarized(rows: SessionRows) -> CloudEvent[SessionSummarized] | None:
    """The closed session's summary; None while it is active or not started."""
    session = rows.session
    if session["status"] == "active" or session["closed_seq"] is None:
        return None
    if session["started_seq"] is None or session["ended_at"] is None:
        return None  # session.started not applied yet: its facts would be missing
    started_at: datetime = session["started_at"]
    ended_at: datetime = session["ended_at"]
    payload = SessionSummarized(
        room_name=_room(session),
        agent_name=session["agent_name"] or "",
        started_at=started_at,
        status=session["status"],
        ended_at=ended_at,
        duration=(ended_at - started_at).total_seconds(),
        close_reason=session["close_reason"],
        room_sid=session["room_sid"],
        job_id=session["job_id"],
        worker_id=session["worker_id"],
        agent_ids=tuple(session["agent_ids"] or ()),
        participants=tuple(session["participants"] or ()),
        turn_count=rows.turns,
        interruption_count=session["interruptions"],
        tool_call_count=session["tool_calls"],
        error_count=session["errors"],
    )
    return _envelope(
        payload, session, sequence=int(session["closed_seq"]), time=ended_at,
        source=SESSIONS_SOURCE, identity="session",
    )  # fmt: skip


def derived_record(event: CloudEvent[Any], *, topic: str) -> OutRecord:
    """The Kafka record of a derived event: key = session id, structured CloudEvent."""
    return OutRecord(
        topic=topic,
        key=event.sessionid.encode(),
        value=encode(event),
        headers=(CONTENT_TYPE_HEADER,),
    )


def _envelope(
    payload: EventPayload, session: Row, *, sequence: int, time: datetime, source: str,
    identity: str,
) -> CloudEvent[Any]:  # fmt: skip
    session_id = str(session["session_id"])
    digest = hashlib.sha256(payload.model_dump_json().encode()).hexdigest()[:16]
    return new_event(
        payload,
        session_id=session_id,
        sequence=sequence,
        source=source,
        subject=_room(session),
        time=time,
        event_id=derived_event_id(f"{session_id}/{identity}/{digest}", time),
    )


def _room(session: Row) -> str:
    return str(session["room"] or "-")


def _first(messages: Sequence[Row], column: str) -> float | None:
    for message in messages:
        value = message[column]
        if value is not None:
            return float(value)
    return None


def _model(session: Row, prefix: str) -> ModelInfo | None:
    provider, model = session[f"{prefix}_provider"], session[f"{prefix}_model"]
    if provider is None and model is None:
        return None
    return ModelInfo(provider=provider, model=model)
