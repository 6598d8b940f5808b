"""Pure functions from one event to the row operations it implies; no I/O.

Every event of the log touches its session row (room, first and last event time, event
count, highest sequence), and most add facts of their own. How a written value merges
with the stored one is the column's rule in `tables`, never the order of arrival: the
live projector and a rebuild, fed the same events in any order, write the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from turnlog.projections.postgres.errors import UnhandledEventError
from turnlog.projections.postgres.tables import (
    MESSAGES,
    PARTICIPANTS,
    SESSIONS,
    TABLES,
    TOOL_CALLS,
    TRANSCRIPTIONS,
    Table,
)
from turnlog.schemas import (
    AgentFalseInterruptionDetected,
    AgentHandedOff,
    AgentStateChanged,
    CloudEvent,
    ConversationItemAdded,
    DataKeyIssued,
    ErasureCompleted,
    ErrorOccurred,
    EventPayload,
    LlmUsage,
    MetricsCollected,
    ModelInfo,
    OverlappingSpeechDetected,
    ParticipantJoined,
    ParticipantLeft,
    SessionClosed,
    SessionStarted,
    SessionSummarized,
    SpeechCreated,
    SttUsage,
    ToolExecutionUpdated,
    ToolsExecuted,
    TrackPublished,
    TrackUnpublished,
    TtsUsage,
    TurnCompleted,
    UsageUpdated,
    UserStateChanged,
    UserTranscribed,
    UserTurnTimedOut,
)


@dataclass(frozen=True, slots=True)
class Upsert:
    """Write `values` into the row of `table` at `key`: a new row takes them (defaults for
    the rest), an existing one merges them column by column by the table's rules."""

    table: str
    key: tuple[Any, ...]
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Insert:
    """Write one immutable fact; writing the same key again changes nothing."""

    table: str
    key: tuple[Any, ...]
    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not TABLES[self.table].facts_only:
            raise ValueError(f"{self.table} merges its rows: write it with Upsert")


RowOp = Upsert | Insert
"""One row operation; apply with `fold.Fold` (memory) or `writer.PostgresProjection`."""

NO_ROWS: Final[frozenset[type[EventPayload]]] = frozenset(
    {TurnCompleted, SessionSummarized, DataKeyIssued, ErasureCompleted}
)
"""Derived records of `turnlog.turns` and `turnlog.sessions`, and the key store's and
erasures' records (their own topics): the projection reads the log only. A derived
record's (sessionid, sequence) is its source event's, so it must not enter the ledger
either; the writer counts them as ignored."""

SESSION_ACTIVITY_ONLY: Final[frozenset[type[EventPayload]]] = frozenset({
    TrackPublished, TrackUnpublished, UserStateChanged, AgentStateChanged, SpeechCreated,
    ToolExecutionUpdated, MetricsCollected, OverlappingSpeechDetected,
})
"""Types that only touch their session row (event count, last event time): their facts
belong to the analytics store."""


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; one such character must not stall the projector
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def room_of(event: CloudEvent[Any]) -> str:
    """The session row's `room` as `event` writes it."""
    return _clean(event.subject)


def _clean_opt(text: str | None) -> str | None:
    return None if text is None else _clean(text)


def _session(event: CloudEvent[Any], **values: Any) -> Upsert:
    values.update(
        room=room_of(event),
        started_at=event.time,
        last_event_at=event.time,
        last_sequence=event.sequence,
        event_count=1,
    )
    return Upsert(SESSIONS.name, (event.sessionid,), values)


def _touch(event: CloudEvent[Any]) -> list[RowOp]:
    return [_session(event)]


def _models(prefix: str, info: ModelInfo | None) -> dict[str, str | None]:
    if info is None:
        return {f"{prefix}_provider": None, f"{prefix}_model": None}
    return {f"{prefix}_provider": _clean_opt(info.provider),
            f"{prefix}_model": _clean_opt(info.model)}


def _session_started(event: CloudEvent[SessionStarted]) -> list[RowOp]:
    data = event.data
    values: dict[str, Any] = {
        "started_seq": event.sequence,
        "agent_name": _clean(data.agent_name),
        "job_id": _clean(data.job_id),
        "worker_id": _clean(data.worker_id),
        "room_sid": _clean_opt(data.room_sid),
        "accepted_at": data.accepted_at,
        "linked_identity": _clean_opt(data.participant_identity),
        **_models("stt", data.stt),
        **_models("llm", data.llm),
        **_models("tts", data.tts),
    }
    if data.agent_id is not None:
        values.update(agent_seq=event.sequence, agent_id=_clean(data.agent_id),
                      agent_ids=(_clean(data.agent_id),))
    if data.participant_identity is not None:
        values["participants"] = (_clean(data.participant_identity),)
    return [_session(event, **values)]


def _session_closed(event: CloudEvent[SessionClosed]) -> list[RowOp]:
    data = event.data
    return [_session(
        event,
        closed_seq=event.sequence,
        status="failed" if data.reason == "error" else "closed",
        close_reason=data.reason,
        ended_at=event.time,
        close_error=None if data.error is None else _clean(data.error.message),
    )]


def _participant_joined(event: CloudEvent[ParticipantJoined]) -> list[RowOp]:
    data = event.data
    identity = _clean(data.identity)
    return [
        _session(event, participants=(identity,)),
        Upsert(PARTICIPANTS.name, (event.sessionid, identity), {
            "joined_at": event.time,
            "joins": 1,
            "joined_seq": event.sequence,
            "sid": _clean(data.sid),
            "name": _clean_opt(data.name),
            "kind": _clean_opt(data.kind),
            "last_joined_at": event.time,
        }),
    ]


def _participant_left(event: CloudEvent[ParticipantLeft]) -> list[RowOp]:
    data = event.data
    identity = _clean(data.identity)
    return [
        _session(event, participants=(identity,)),
        Upsert(PARTICIPANTS.name, (event.sessionid, identity), {
            "left_seq": event.sequence,
            "left_at": event.time,
            "disconnect_reason": _clean_opt(data.disconnect_reason),
        }),
    ]


def transcription_row(event: CloudEvent[UserTranscribed]) -> tuple[Any, ...]:
    """The transcriptions row of `event`, key included, in `TRANSCRIPTIONS` column order."""
    data = event.data
    return (
        event.sessionid,
        event.sequence,
        _clean_opt(data.turn_id),
        data.is_final,
        _clean(data.transcript),
        _clean_opt(data.language),
        data.confidence,
        _clean_opt(data.speaker_id),
        event.time,
    )


def _user_transcribed(event: CloudEvent[UserTranscribed]) -> list[RowOp]:
    return [_session(event), _fact(TRANSCRIPTIONS, transcription_row(event))]


def _fact(table: Table, row: tuple[Any, ...]) -> Insert:
    width = len(table.key)
    return Insert(table.name, row[:width], dict(zip(_VALUE_NAMES[table.name], row[width:],
                                                    strict=True)))


_VALUE_NAMES: Final = {t.name: tuple(c.name for c in t.columns) for t in (MESSAGES, TRANSCRIPTIONS)}


def message_row(event: CloudEvent[ConversationItemAdded]) -> tuple[Any, ...]:
    """The messages row of `event`, key included, in `MESSAGES` column order."""
    data = event.data
    metrics = data.metrics
    return (
        event.sessionid,
        event.sequence,
        _clean(data.item_id),
        _clean_opt(data.turn_id),
        data.role,
        _clean(data.text),
        data.interrupted,
        data.transcript_confidence,
        event.time,
        _clean_opt(data.agent_id),
        metrics.started_speaking_at,
        metrics.stopped_speaking_at,
        metrics.transcription_delay,
        metrics.end_of_turn_delay,
        metrics.on_user_turn_completed_delay,
        metrics.llm_node_ttft,
        metrics.llm_node_tps,
        metrics.llm_node_ttfs,
        metrics.tts_node_ttfb,
        metrics.playback_latency,
        metrics.e2e_latency,
        tuple(_clean(r) for r in metrics.provider_request_ids),
    )


def message_counters(data: ConversationItemAdded) -> dict[str, int]:
    """What a message adds to its session's turn counters."""
    if data.role == "user":
        return {"user_turns": 1}
    if data.role != "assistant":
        return {}
    if data.interrupted:
        return {"assistant_turns": 1, "interruptions": 1}
    return {"assistant_turns": 1}


def _item_added(event: CloudEvent[ConversationItemAdded]) -> list[RowOp]:
    return [_session(event, **message_counters(event.data)), _fact(MESSAGES, message_row(event))]


def _tools_executed(event: CloudEvent[ToolsExecuted]) -> list[RowOp]:
    data = event.data
    ops: list[RowOp] = [_session(event, tool_calls=len(data.calls))]
    for position, call in enumerate(data.calls):
        ops.append(Upsert(TOOL_CALLS.name, (event.sessionid, _clean(call.call_id)), {
            "sequence": event.sequence,
            "position": position,
            "turn_id": _clean_opt(data.turn_id),
            "name": _clean(call.name),
            "arguments": _clean(call.arguments),
            "output": _clean(call.output),
            "is_error": call.is_error,
            "reply_required": call.reply_required,
            "started_at": call.started_at,
            "duration_s": call.duration,
            "group_id": _clean_opt(call.group_id),
            "created_at": event.time,
        }))
    return ops


def _usage_updated(event: CloudEvent[UsageUpdated]) -> list[RowOp]:
    entries = event.data.model_usage
    usage = [
        {k: _clean(v) if isinstance(v, str) else v for k, v in e.model_dump(mode="json").items()}
        for e in entries
    ]
    # Sums within one event, in the event's order: deterministic. Never across events:
    # the totals are cumulative, the latest event holds them.
    return [_session(
        event,
        usage_seq=event.sequence,
        usage=usage,
        llm_prompt_tokens=sum(e.input_tokens for e in entries if isinstance(e, LlmUsage)),
        llm_completion_tokens=sum(e.output_tokens for e in entries if isinstance(e, LlmUsage)),
        tts_characters=sum(e.characters_count for e in entries if isinstance(e, TtsUsage)),
        tts_audio_s=sum((e.audio_duration for e in entries if isinstance(e, TtsUsage)), 0.0),
        stt_audio_s=sum((e.audio_duration for e in entries if isinstance(e, SttUsage)), 0.0),
    )]


def _false_interruption(event: CloudEvent[AgentFalseInterruptionDetected]) -> list[RowOp]:
    return [_session(event, false_interruptions=1)]


def _handoff(event: CloudEvent[AgentHandedOff]) -> list[RowOp]:
    data = event.data
    new_agent = _clean(data.new_agent_id)
    ids = (new_agent,) if data.old_agent_id is None else (_clean(data.old_agent_id), new_agent)
    return [_session(event, handoffs=1, agent_seq=event.sequence, agent_id=new_agent,
                     agent_ids=tuple(sorted(set(ids))))]


def _turn_timeout(event: CloudEvent[UserTurnTimedOut]) -> list[RowOp]:
    return [_session(event, turn_timeouts=1)]


def _error(event: CloudEvent[ErrorOccurred]) -> list[RowOp]:
    error = event.data.error
    return [_session(event, errors=1, error_seq=event.sequence,
                     last_error=_clean(error.message), last_error_source=error.source)]


_HANDLERS: Final[Mapping[type[EventPayload], Callable[[CloudEvent[Any]], list[RowOp]]]] = {
    SessionStarted: _session_started,
    SessionClosed: _session_closed,
    ParticipantJoined: _participant_joined,
    ParticipantLeft: _participant_left,
    UserTranscribed: _user_transcribed,
    ConversationItemAdded: _item_added,
    ToolsExecuted: _tools_executed,
    UsageUpdated: _usage_updated,
    AgentFalseInterruptionDetected: _false_interruption,
    AgentHandedOff: _handoff,
    UserTurnTimedOut: _turn_timeout,
    ErrorOccurred: _error,
    **{payload: _touch for payload in SESSION_ACTIVITY_ONLY},
}

HANDLED: Final[frozenset[type[EventPayload]]] = frozenset(_HANDLERS)
"""Payload types that produce rows."""


def reads(event: CloudEvent[Any]) -> bool:
    """Whether the projection reads this event (False: a derived record, see `NO_ROWS`)."""
    return type(event.data) not in NO_ROWS


def row_ops(event: CloudEvent[Any]) -> list[RowOp]:
    """The row operations `event` implies; none for the types of `NO_ROWS`.

    Raises `UnhandledEventError` for a payload type this module does not know (a catalog
    newer than the projector): better a DLQ entry than a silently missing fact."""
    handler = _HANDLERS.get(type(event.data))
    if handler is not None:
        return handler(event)
    if type(event.data) in NO_ROWS:
        return []
    raise UnhandledEventError(event.type, event_id=event.id, session_id=event.sessionid)
