"""Events to rows: the pure half of the ClickHouse projection (no I/O).

Every event of the log becomes a row of ``events``. Some also become rows of the typed
tables: a turn fact (``turn_facts``) for the events that tell something about a turn,
a ``metrics`` row per ``metrics.collected``, a ``usage`` row per model in a
``usage.updated``, an ``errors`` row per ``error``. Rows are tuples in the column order
of their ``Table``; values are plain Python (aware UTC datetimes, None for NULL).

Derived records (``turn.completed``, ``session.summarized``) are not log events: they
carry the sequence of the event they were derived from, so as rows of ``events`` they
would replace it. They produce no rows; the turns view derives the same facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from turnlog.schemas import (
    CloudEvent,
    ConversationItemAdded,
    ErrorOccurred,
    EventPayload,
    LlmMetrics,
    MetricsCollected,
    ModelInfo,
    RealtimeModelMetrics,
    SessionSummarized,
    ToolsExecuted,
    TurnCompleted,
    UsageUpdated,
    UserTranscribed,
)

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """A table the writer inserts into, and the columns it provides, in row order."""

    name: str
    columns: tuple[str, ...]


EVENTS: Final = Table(
    "events",
    ("event_id", "type", "session_id", "sequence", "turn_id", "time", "source", "room", "data"),
)
TURN_FACTS: Final = Table(
    "turn_facts",
    (
        "session_id", "turn_id", "sequence", "time", "room", "type", "role", "item_id",
        "text", "is_final", "language", "transcript_confidence", "agent_id", "interrupted",
        "started_speaking_at", "stopped_speaking_at", "end_of_turn_delay",
        "transcription_delay", "on_user_turn_completed_delay", "llm_node_ttft",
        "llm_node_ttfs", "tts_node_ttfb", "playback_latency", "e2e_latency",
        "stt_provider", "stt_model", "llm_provider", "llm_model", "tts_provider",
        "tts_model", "tool_call_ids",
    ),
)  # fmt: skip
METRICS: Final = Table(
    "metrics",
    (
        "session_id", "sequence", "turn_id", "time", "room", "kind", "provider", "model",
        "label", "request_id", "speech_id", "measured_at", "duration", "ttft", "ttfb",
        "audio_duration", "end_of_utterance_delay", "transcription_delay", "cancelled",
        "input_tokens", "cached_input_tokens", "output_tokens", "total_tokens",
        "characters_count", "fields",
    ),
)  # fmt: skip
USAGE: Final = Table(
    "usage",
    (
        "session_id", "kind", "provider", "model", "sequence", "time", "room",
        "input_tokens", "cached_input_tokens", "output_tokens", "characters_count",
        "audio_duration", "session_duration", "requests", "fields",
    ),
)  # fmt: skip
ERRORS: Final = Table(
    "errors",
    (
        "session_id", "sequence", "turn_id", "time", "room", "source", "provider", "model",
        "error_type", "label", "message", "recoverable", "status_code",
    ),
)  # fmt: skip
POSITIONS: Final = Table("positions", ("topic", "partition", "next_offset"))

TABLES: Final = (EVENTS, TURN_FACTS, METRICS, USAGE, ERRORS)
"""The tables event rows go to, in the order the writer inserts them."""

DERIVED_TYPES: Final = frozenset({TurnCompleted.TYPE, SessionSummarized.TYPE})

Event = CloudEvent[Any]


def rows_for(event: Event) -> list[tuple[Table, Row]]:
    """The rows ``event`` contributes, each with its table."""
    if event.type in DERIVED_TYPES:
        return []
    rows: list[tuple[Table, Row]] = [(EVENTS, event_row(event))]
    build = _BUILDERS.get(type(event.data))
    if build is not None:
        rows.extend(build(event))
    return rows


def rows_by_table(event: Event) -> dict[str, list[dict[str, Any]]]:
    """``rows_for`` as ``{table: [{column: value}]}``: for tests and debugging."""
    result: dict[str, list[dict[str, Any]]] = {}
    for table, row in rows_for(event):
        result.setdefault(table.name, []).append(dict(zip(table.columns, row, strict=True)))
    return result


def event_row(event: Event) -> Row:
    """The raw event: envelope fields, and the payload as JSON."""
    return (
        event.id,
        event.type,
        event.sessionid,
        event.sequence,
        getattr(event.data, "turn_id", None),
        event.time,
        event.source,
        event.subject,
        event.data.__pydantic_serializer__.to_json(event.data).decode(),
    )


# --- turn facts ------------------------------------------------------------------------

_TURN_FACT_INDEX: Final = {column: i for i, column in enumerate(TURN_FACTS.columns)}
_TURN_FACT_DEFAULTS: Final[tuple[Any, ...]] = tuple(
    "" if c == "role" else () if c == "tool_call_ids" else None for c in TURN_FACTS.columns
)


def _turn_fact(event: Event, turn_id: str, **facts: Any) -> tuple[Table, Row]:
    values = list(_TURN_FACT_DEFAULTS)
    values[:6] = (event.sessionid, turn_id, event.sequence, event.time, event.subject, event.type)
    for column, value in facts.items():
        values[_TURN_FACT_INDEX[column]] = value
    return TURN_FACTS, tuple(values)


def _transcript_rows(event: Event) -> Iterator[tuple[Table, Row]]:
    data: UserTranscribed = event.data
    if data.turn_id is not None:
        yield _turn_fact(
            event, data.turn_id, text=data.transcript, is_final=data.is_final,
            language=data.language,
        )  # fmt: skip


def _message_rows(event: Event) -> Iterator[tuple[Table, Row]]:
    data: ConversationItemAdded = event.data
    if data.turn_id is None or data.role not in ("user", "assistant"):
        return
    m = data.metrics
    yield _turn_fact(
        event,
        data.turn_id,
        role=data.role,
        item_id=data.item_id,
        text=data.text,
        interrupted=data.interrupted if data.role == "assistant" else None,
        transcript_confidence=data.transcript_confidence,
        agent_id=data.agent_id,
        started_speaking_at=m.started_speaking_at,
        stopped_speaking_at=m.stopped_speaking_at,
        end_of_turn_delay=m.end_of_turn_delay,
        transcription_delay=m.transcription_delay,
        on_user_turn_completed_delay=m.on_user_turn_completed_delay,
        llm_node_ttft=m.llm_node_ttft,
        llm_node_ttfs=m.llm_node_ttfs,
        tts_node_ttfb=m.tts_node_ttfb,
        playback_latency=m.playback_latency,
        e2e_latency=m.e2e_latency,
        **_model_info("stt", m.stt),
        **_model_info("llm", m.llm),
        **_model_info("tts", m.tts),
    )


def _model_info(stage: str, info: ModelInfo | None) -> dict[str, str | None]:
    if info is None:
        return {}
    return {f"{stage}_provider": info.provider, f"{stage}_model": info.model}


def _tool_rows(event: Event) -> Iterator[tuple[Table, Row]]:
    data: ToolsExecuted = event.data
    if data.turn_id is not None and data.calls:
        yield _turn_fact(event, data.turn_id, tool_call_ids=[c.call_id for c in data.calls])


# --- metrics, usage, errors ------------------------------------------------------------


def _metrics_rows(event: Event) -> Iterator[tuple[Table, Row]]:
    data: MetricsCollected = event.data
    m = data.metrics
    f = m.__dict__  # field values; .get() for the fields only some kinds have
    input_tokens, cached, output_tokens = _token_counts(m)
    ttft = f.get("ttft")
    yield METRICS, (
        event.sessionid, event.sequence, data.turn_id, event.time, event.subject,
        m.kind, m.provider or "", m.model or "",
        f.get("label", ""), f.get("request_id", ""), f.get("speech_id"), m.timestamp,
        f.get("duration"),
        ttft if ttft is not None and ttft >= 0 else None,
        f.get("ttfb"),
        f.get("audio_duration"),
        f.get("end_of_utterance_delay"),
        f.get("transcription_delay") if m.kind == "eou" else None,
        f.get("cancelled"),
        input_tokens, cached, output_tokens,
        f.get("total_tokens") or input_tokens + output_tokens,
        f.get("characters_count", 0),
        numeric_fields(m),
    )  # fmt: skip


def _token_counts(m: BaseModel) -> tuple[int, int, int]:
    """(input, cached input, output) tokens, whatever the kind calls them."""
    if isinstance(m, LlmMetrics):
        return m.prompt_tokens, m.prompt_cached_tokens, m.completion_tokens
    if isinstance(m, RealtimeModelMetrics):
        return m.input_tokens, m.input_token_details.cached_tokens, m.output_tokens
    f = m.__dict__
    return f.get("input_tokens") or 0, 0, f.get("output_tokens") or 0


def _usage_rows(event: Event) -> Iterator[tuple[Table, Row]]:
    data: UsageUpdated = event.data
    for u in data.model_usage:
        f = u.__dict__
        yield USAGE, (
            event.sessionid, u.kind, u.provider, u.model, event.sequence, event.time,
            event.subject,
            f.get("input_tokens", 0), f.get("input_cached_tokens", 0),
            f.get("output_tokens", 0), f.get("characters_count", 0),
            f.get("audio_duration", 0.0), f.get("session_duration", 0.0),
            f.get("total_requests", 0),
            numeric_fields(u),
        )  # fmt: skip


def _error_rows(event: Event) -> Iterator[tuple[Table, Row]]:
    data: ErrorOccurred = event.data
    e = data.error
    yield ERRORS, (
        event.sessionid, event.sequence, data.turn_id, event.time, event.subject,
        e.source, e.provider or "", e.model or "", e.error_type or "", e.label or "",
        e.message, e.recoverable, e.status_code,
    )  # fmt: skip


def numeric_fields(model: BaseModel, prefix: str = "") -> dict[str, float]:
    """Every number and flag of ``model`` (nested models flattened with dots), as floats."""
    values = model.__dict__  # a pydantic model's field values
    fields = {prefix + k: float(v) for k, v in values.items() if type(v) in _NUMBERS}
    for name, value in values.items():
        if isinstance(value, BaseModel):
            fields |= numeric_fields(value, f"{prefix}{name}.")
    return fields


_NUMBERS: Final = frozenset({int, float, bool})


_BUILDERS: Final[dict[type[EventPayload], Callable[[Event], Iterator[tuple[Table, Row]]]]] = {
    UserTranscribed: _transcript_rows,
    ConversationItemAdded: _message_rows,
    ToolsExecuted: _tool_rows,
    MetricsCollected: _metrics_rows,
    UsageUpdated: _usage_rows,
    ErrorOccurred: _error_rows,
}

