"""Response models of the read routes: what the read models hold, as the API shows it.
Durations in seconds, times RFC 3339 in UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from turnlog.api.base import ApiModel
from turnlog.api.erasure import Erasure


class ErasureStepOut(ApiModel):
    store: str
    """`key_store`, `postgres`, `clickhouse`, `kafka` or `gateway`."""
    action: str
    count: int


class ErasureOut(ApiModel):
    """An erasure: what was asked, by whom, and what each store did. Never personal data:
    a participant appears only as the SHA-256 of their identity."""

    erasure_id: str
    scope: Literal["session", "participant", "retention"]
    status: Literal["completed", "pending"]
    """`pending`: the keys are destroyed and the read models purged, the Kafka tombstones
    and the `erasure.completed` record are not written yet (Kafka unreachable); it
    completes on its own."""
    already_erased: bool
    """True when everything asked for had been erased before (this is that erasure)."""
    requested_by: str
    requested_at: datetime
    completed_at: datetime | None
    reason: str | None
    subject_digest: str | None
    session_ids: list[str]
    steps: list[ErasureStepOut]

    @classmethod
    def of(cls, erasure: Erasure) -> ErasureOut:
        return cls(
            erasure_id=erasure.erasure_id, scope=erasure.scope, status=erasure.status,
            already_erased=erasure.already, requested_by=erasure.requested_by,
            requested_at=erasure.requested_at, completed_at=erasure.completed_at,
            reason=erasure.reason, subject_digest=erasure.subject_digest,
            session_ids=erasure.session_ids,
            steps=[ErasureStepOut.model_validate(s.model_dump()) for s in erasure.steps],
        )  # fmt: skip


class SessionSummaryOut(ApiModel):
    """One session of the list."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "session_id": "sess_tutor_happy", "room": "math-room-1", "agent_name": "tutor",
            "status": "closed", "close_reason": "participant_disconnected",
            "started_at": "2025-03-01T10:00:00Z", "ended_at": "2025-03-01T10:01:05Z",
            "last_event_at": "2025-03-01T10:01:05Z", "participants": ["student-42"],
            "user_turns": 4, "assistant_turns": 4, "interruptions": 1, "tool_calls": 2,
            "errors": 0,
        }]}
    )  # fmt: skip

    session_id: str
    room: str | None
    agent_name: str | None
    status: str
    """`active`, `closed` or `failed` (closed on an error)."""
    close_reason: str | None
    started_at: datetime
    ended_at: datetime | None
    last_event_at: datetime | None
    participants: list[str]
    """Identities of the remote participants seen."""
    user_turns: int
    assistant_turns: int
    interruptions: int
    tool_calls: int
    errors: int
    erasure: ErasureOut | None = None
    """Set when the session was erased: who asked, when, and what each store removed.
    Its personal fields are gone (participants empty, no transcript)."""


class LatencyOut(ApiModel):
    """Per-turn latency of the session's committed answers, in seconds."""

    measured_turns: int
    """Answers with an end-to-end latency."""
    e2e_mean_s: float | None
    e2e_p50_s: float | None
    e2e_p95_s: float | None
    llm_ttft_mean_s: float | None
    tts_ttfb_mean_s: float | None
    end_of_utterance_mean_s: float | None
    transcription_delay_mean_s: float | None


class ParticipantOut(ApiModel):
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


class SessionDetailOut(SessionSummaryOut):
    """One session with its counts, participants, models and latency."""

    model_config = ConfigDict(json_schema_extra=None)

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
    models: dict[str, str | None] = Field(
        examples=[{"stt_provider": "deepgram", "stt_model": "nova-3", "llm_provider": "openai",
                   "llm_model": "gpt-4o-mini", "tts_provider": "openai", "tts_model": "tts-1"}]
    )  # fmt: skip
    """`stt_provider`, `stt_model`, `llm_...`, `tts_...` as the session started."""
    latency: LatencyOut
    participants: list[ParticipantOut]  # type: ignore[assignment]


class TranscriptTurnOut(ApiModel):
    """One committed message (a user or agent turn), in commit order."""

    sequence: int
    """Sequence of the event that committed it; pages go by it."""
    item_id: str | None
    turn_id: str | None
    role: str = Field(examples=["user", "assistant"])
    text: str
    interrupted: bool
    """Whether the user cut the answer short."""
    confidence: float | None
    """STT confidence of a user message."""
    created_at: datetime
    agent_id: str | None
    started_speaking_at: datetime | None
    stopped_speaking_at: datetime | None
    transcription_delay_s: float | None
    """End of the user's speech to the final transcript."""
    end_of_utterance_delay_s: float | None
    """End of the user's speech to the end-of-turn decision."""
    llm_ttft_s: float | None
    """LLM time to first token."""
    tts_ttfb_s: float | None
    """TTS time to first audio byte."""
    e2e_latency_s: float | None
    """End of the user's speech to the agent's first audio."""


class TranscriptOut(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "session_id": "sess_tutor_happy",
            "turns": [{
                "sequence": 12, "item_id": "item_t1_user", "turn_id": "t1", "role": "user",
                "text": "what is seven times eight", "interrupted": False, "confidence": 0.93,
                "created_at": "2025-03-01T10:00:03.510Z", "agent_id": None,
                "started_speaking_at": "2025-03-01T10:00:02Z",
                "stopped_speaking_at": "2025-03-01T10:00:03.200Z",
                "transcription_delay_s": 0.25, "end_of_utterance_delay_s": 0.3,
                "llm_ttft_s": None, "tts_ttfb_s": None, "e2e_latency_s": None,
            }],
            "next_after": None,
        }]}
    )  # fmt: skip

    session_id: str
    turns: list[TranscriptTurnOut]
    next_after: int | None
    """Pass as `after_sequence` for the next page; null on the last one."""


class SessionEventOut(ApiModel):
    sequence: int
    event_id: str
    type: str = Field(examples=["turnlog.user.transcribed.v1"])
    time: datetime
    turn_id: str | None
    data: dict[str, Any]
    """The event's payload as recorded."""


class EventPageOut(ApiModel):
    session_id: str
    events: list[SessionEventOut]
    next_after: int | None
    """Pass as `after` for the next page; null on the last one."""
