"""Typed rows of the read queries (`queries`), as the API receives them. Durations in
seconds, times aware UTC."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SessionCursor:
    """Where a page of the session list ended: the last session's (started_at, id)."""

    started_at: datetime
    session_id: str

    def encode(self) -> str:
        """An opaque token for the API's `cursor` parameter."""
        raw = f"{self.started_at.isoformat()}|{self.session_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> SessionCursor:
        """The cursor of `encode`; `ValueError` for anything else."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            started_at, session_id = raw.split("|", 1)
            when = datetime.fromisoformat(started_at)
        except (binascii.Error, UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"invalid session cursor {token[:40]!r}") from error
        if when.tzinfo is None:
            raise ValueError(f"invalid session cursor {token[:40]!r}: naive time")
        return cls(when, session_id)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One line of the session list."""

    session_id: str
    room: str | None
    agent_name: str | None
    status: str
    close_reason: str | None
    started_at: datetime
    ended_at: datetime | None
    last_event_at: datetime | None
    participants: list[str]
    user_turns: int
    assistant_turns: int
    interruptions: int
    tool_calls: int
    errors: int

    @property
    def cursor(self) -> SessionCursor:
        return SessionCursor(self.started_at, self.session_id)


@dataclass(frozen=True, slots=True)
class SessionPage:
    items: list[SessionSummary]
    next_cursor: SessionCursor | None
    """None on the last page."""


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    identity: str
    kind: str | None
    name: str | None
    sid: str | None
    joined_at: datetime | None
    """First join."""
    last_joined_at: datetime | None
    left_at: datetime | None
    """Latest leave."""
    disconnect_reason: str | None
    joins: int
    present: bool
    """Whether the latest join came after the latest leave."""

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> ParticipantRow:
        values: dict[str, Any] = dict(item)
        for name in ("joined_at", "last_joined_at", "left_at"):
            if values[name] is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Per-turn latency of a session's committed messages: mean, median, p95."""

    measured_turns: int
    """Assistant messages with an end-to-end latency."""
    e2e_mean_s: float | None
    e2e_p50_s: float | None
    e2e_p95_s: float | None
    llm_ttft_mean_s: float | None
    tts_ttfb_mean_s: float | None
    end_of_utterance_mean_s: float | None
    transcription_delay_mean_s: float | None


@dataclass(frozen=True, slots=True)
class SessionDetail:
    summary: SessionSummary
    job_id: str | None
    worker_id: str | None
    room_sid: str | None
    agent_id: str | None
    """The agent active last (after any handoff)."""
    agent_ids: list[str]
    close_error: str | None
    duration_s: float | None
    event_count: int
    last_sequence: int
    """Highest sequence applied; equal to `event_count` when no event is missing."""
    false_interruptions: int
    handoffs: int
    turn_timeouts: int
    last_error: str | None
    llm_prompt_tokens: int | None
    llm_completion_tokens: int | None
    tts_characters: int | None
    stt_audio_s: float | None
    tts_audio_s: float | None
    models: dict[str, str | None]
    """`stt_provider`, `stt_model`, `llm_...`, `tts_...` from session.started."""
    latency: LatencyStats
    participants: list[ParticipantRow]


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One committed message, in commit order."""

    sequence: int
    item_id: str | None
    turn_id: str | None
    role: str
    text: str
    interrupted: bool
    confidence: float | None
    created_at: datetime
    agent_id: str | None
    started_speaking_at: datetime | None
    stopped_speaking_at: datetime | None
    transcription_delay_s: float | None
    end_of_utterance_delay_s: float | None
    llm_ttft_s: float | None
    tts_ttfb_s: float | None
    e2e_latency_s: float | None


@dataclass(frozen=True, slots=True)
class ToolCallRow:
    call_id: str
    sequence: int
    position: int
    turn_id: str | None
    name: str
    arguments: str | None
    output: str | None
    is_error: bool
    duration_s: float | None
    started_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SttTurn:
    """The speech-to-text history of one turn: how the transcript settled."""

    turn_id: str | None
    results: int
    interims: int
    finals: int
    stable_interims: int
    """Interim results that are a prefix of the turn's final text: the rest were revised."""
    first_result_at: datetime
    first_final_at: datetime | None
    time_to_final_s: float | None
    """Seconds from the first result (interim or final) to the first final one."""
    final_text: str | None
    """The final results of the turn, joined in order."""


@dataclass(frozen=True, slots=True)
class TranscriptionRow:
    """One speech-to-text result, interim or final."""

    sequence: int
    turn_id: str | None
    is_final: bool
    text: str
    language: str | None
    confidence: float | None
    speaker_id: str | None
    created_at: datetime
