"""What the derived fold holds per session and turn, and the records it builds from them:
`TurnCompleted` for a turn, `SessionSummarized` for a closed session. Pure, no I/O; the
semantics (when a record is emitted, what its revision and id are) are `derived_state`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from turnlog.schemas import (
    CloudEvent,
    ModelInfo,
    SessionSummarized,
    TurnCompleted,
    derived_event_id,
    new_event,
    stream_source,
)

APP_NAME: Final = "turnlog"
TURNS_SOURCE: Final = stream_source(APP_NAME, "turns")
SESSIONS_SOURCE: Final = stream_source(APP_NAME, "sessions")

LATENCIES: Final = (
    "end_of_turn_delay", "transcription_delay", "on_user_turn_completed_delay",
    "llm_node_ttft", "llm_node_ttfs", "tts_node_ttfb", "playback_latency", "e2e_latency",
)  # fmt: skip
"""`TurnCompleted` latency fields, named as on `MessageMetrics`."""

DERIVED: Final = (TurnCompleted, SessionSummarized)
"""Payloads this fold produces; met on the events topic, they are skipped."""


@dataclass(slots=True)
class Turn:
    """What one turn's facts say so far."""

    turn_id: str
    user: dict[str, Any] | None = None
    """The turn's first user message: text, item id, confidence, speaking times."""
    user_latencies: dict[str, float] = field(default_factory=dict)
    answer: dict[str, Any] | None = None
    """The first assistant message: item id, agent id, when the agent spoke."""
    texts: list[str] = field(default_factory=list)
    """Assistant texts in sequence order."""
    interrupted: bool = False
    answer_latencies: dict[str, float] = field(default_factory=dict)
    """Per latency, the first one measured over the assistant messages."""
    calls: list[str] = field(default_factory=list)
    """Distinct tool call ids."""
    language: str | None = None
    revision: int = 0
    """Sequence of the latest fact."""
    revised_at: datetime | None = None
    """Time of that fact."""
    emitted: int = 0
    """Revision of the last record emitted."""


@dataclass(slots=True)
class Session:
    """One session's fold: the prefix folded so far, its buffer, its facts, its turns."""

    session_id: str
    next_sequence: int = 1
    """The first sequence not folded yet (the prefix is 1 .. next_sequence - 1)."""
    buffer: dict[int, CloudEvent[Any]] = field(default_factory=dict)
    room: str | None = None
    started_at: datetime | None = None
    started: dict[str, Any] = field(default_factory=dict)
    """What `session.started` said: agent name, job, worker, room sid, models."""
    closed: dict[str, Any] | None = None
    """What `session.closed` said: sequence, status, reason, time."""
    agent_ids: list[str] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    interruptions: int = 0
    tool_calls: int = 0
    errors: int = 0
    last_time: datetime | None = None
    """Time of the event at the prefix's end."""
    turns: dict[str, Turn] = field(default_factory=dict)
    summarized: int = 0
    """Revision of the last summary emitted."""
    summarized_at: float | None = None
    """When (the caller's clock) the first summary was emitted."""
    arrived_at: float = 0.0
    """When (the caller's clock) its latest event arrived."""
    skipped: int = 0
    """Sequences given up on (buffer over its cap)."""

    @property
    def folded(self) -> int:
        return self.next_sequence - 1


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A dropped session: its last folded sequence, and when it was dropped."""

    session_id: str
    folded: int
    dropped_at: float


@dataclass(frozen=True, slots=True)
class Output:
    """A derived record to publish: its Kafka key and event."""

    key: str
    event: CloudEvent[Any]


def turn_output(session: Session, turn: Turn) -> Output:
    """The record of `turn` at its current revision."""
    user, answer = turn.user, turn.answer
    if answer is None or turn.revised_at is None:
        raise ValueError(f"turn {turn.turn_id} has no assistant message yet")
    latencies = {name: turn.user_latencies.get(name, turn.answer_latencies.get(name))
                 for name in LATENCIES}  # fmt: skip
    started = session.started
    payload = TurnCompleted(
        turn_id=turn.turn_id,
        interrupted=turn.interrupted,
        user_text=None if user is None else user["text"],
        assistant_text=" ".join(turn.texts),
        user_item_id=None if user is None else user["item_id"],
        assistant_item_id=answer["item_id"],
        agent_id=answer["agent_id"],
        language=turn.language,
        transcript_confidence=None if user is None else user["confidence"],
        user_started_speaking_at=None if user is None else user["started_speaking_at"],
        user_stopped_speaking_at=None if user is None else user["stopped_speaking_at"],
        agent_started_speaking_at=answer["started_speaking_at"],
        tool_call_count=len(turn.calls),
        stt=_model(started.get("stt")),
        llm=_model(started.get("llm")),
        tts=_model(started.get("tts")),
        revision=turn.revision,
        **latencies,
    )
    sid = session.session_id
    event = new_event(
        payload, session_id=sid, sequence=turn.revision, source=TURNS_SOURCE,
        subject=session.room or "-", time=turn.revised_at,
        event_id=derived_event_id(f"{sid}/turn/{turn.turn_id}/{turn.revision}", turn.revised_at),
    )  # fmt: skip
    return Output(key=f"{sid}/{turn.turn_id}", event=event)


def summary_output(session: Session) -> Output:
    """The summary of a closed session at its current revision (= its prefix's end)."""
    closed, started_at = session.closed, session.started_at
    if closed is None or started_at is None:
        raise ValueError(f"session {session.session_id} is not closed")
    started = session.started
    ended_at: datetime = closed["time"]
    payload = SessionSummarized(
        room_name=session.room or "-",
        agent_name=started.get("agent_name", ""),
        started_at=started_at,
        status=closed["status"],
        ended_at=ended_at,
        duration=(ended_at - started_at).total_seconds(),
        close_reason=closed["reason"],
        room_sid=started.get("room_sid"),
        job_id=started.get("job_id"),
        worker_id=started.get("worker_id"),
        agent_ids=tuple(session.agent_ids),
        participants=tuple(session.participants),
        turn_count=sum(1 for t in session.turns.values() if t.answer is not None),
        interruption_count=session.interruptions,
        tool_call_count=session.tool_calls,
        error_count=session.errors,
        revision=session.folded,
    )
    sid, revision = session.session_id, session.folded
    event = new_event(
        payload, session_id=sid, sequence=revision, source=SESSIONS_SOURCE,
        subject=payload.room_name, time=ended_at,
        event_id=derived_event_id(f"{sid}/session/{revision}", ended_at),
    )  # fmt: skip
    return Output(key=sid, event=event)


def _model(pair: Any) -> ModelInfo | None:
    if pair is None:
        return None
    provider, model = pair
    if provider is None and model is None:
        return None
    return ModelInfo(provider=provider, model=model)
