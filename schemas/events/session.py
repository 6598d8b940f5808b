"""Session, room and error facts: who is in the room, what it publishes, how it ended."""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from turnlog.schemas.base import EventPayload, ModelInfo, Record, TurnScoped, UtcDatetime
from turnlog.schemas.personal import OptionalPersonal, Personal

CloseReason: TypeAlias = Literal[
    "error", "job_shutdown", "participant_disconnected", "user_initiated", "task_completed"
]
"""LiveKit's `CloseReason` values (livekit-agents 1.8.9)."""

ErrorSource: TypeAlias = Literal[
    "llm", "stt", "tts", "realtime_model", "interruption_detection", "other"
]
"""Which component raised an error: LiveKit's `LLMError`, `STTError`, `TTSError`,
`RealtimeModelError`, `InterruptionDetectionError`, or anything else."""


class SessionStarted(EventPayload):
    """The worker accepted the job and joined the room: an AgentSession begins.

    From the job request (accept) and the room connection; the envelope `time` is when the
    room was joined and `subject` is the room name."""

    TYPE: ClassVar[str] = "turnlog.session.started.v1"

    job_id: str
    """LiveKit job id."""
    agent_name: str
    """Name the worker registered for explicit dispatch; empty for automatic dispatch."""
    worker_id: str
    """LiveKit worker id."""
    room_sid: str | None = None
    """LiveKit room sid, when the server reported it."""
    agent_id: str | None = None
    """Id of the first `Agent` the session runs (`Agent.id`)."""
    participant_identity: OptionalPersonal = None
    """Identity of the participant the session is linked to, if known at start."""
    accepted_at: UtcDatetime | None = None
    """When the worker accepted the job (UTC)."""
    stt: ModelInfo | None = None
    """Speech-to-text provider and model, if the session has one."""
    llm: ModelInfo | None = None
    """LLM (or realtime model) provider and model, if the session has one."""
    tts: ModelInfo | None = None
    """Text-to-speech provider and model, if the session has one."""


class ErrorDetail(Record):
    """An error as it may be recorded: never the exception object, never secrets."""

    source: ErrorSource
    """Which component raised it."""
    message: Personal
    """Human-readable message, scrubbed by the gateway: no API keys, tokens or URLs with
    credentials, and truncated to a few hundred characters."""
    recoverable: bool
    """Whether LiveKit retries or carries on (True) or the session cannot continue."""
    error_type: str | None = None
    """Class name of the underlying exception, e.g. `APIStatusError`."""
    label: str | None = None
    """LiveKit label of the component, e.g. `livekit.plugins.openai.llm.LLM`."""
    provider: str | None = None
    """Provider of the failing component, e.g. `openai`."""
    model: str | None = None
    """Model of the failing component, e.g. `gpt-4o-mini`."""
    status_code: int | None = None
    """HTTP status code the provider answered with, when the error is an API error."""


class SessionClosed(EventPayload):
    """The AgentSession closed (LiveKit `close` event, or the job shutting down)."""

    TYPE: ClassVar[str] = "turnlog.session.closed.v1"

    reason: CloseReason
    """Why the session closed."""
    error: ErrorDetail | None = None
    """The error that closed the session, when `reason` is `error`."""


class ParticipantJoined(EventPayload):
    """A participant connected to the room (room `participant_connected`)."""

    TYPE: ClassVar[str] = "turnlog.participant.joined.v1"

    identity: Personal
    """Participant identity, stable across reconnects."""
    sid: str
    """Participant sid, new for every connection."""
    name: OptionalPersonal = None
    """Display name, if set."""
    kind: str | None = None
    """LiveKit participant kind, lower case: `standard`, `sip`, `agent`, `ingress`,
    `egress`, ..."""


class ParticipantLeft(EventPayload):
    """A participant disconnected from the room (room `participant_disconnected`)."""

    TYPE: ClassVar[str] = "turnlog.participant.left.v1"

    identity: Personal
    """Participant identity."""
    sid: str
    """Participant sid of the connection that ended."""
    disconnect_reason: str | None = None
    """LiveKit disconnect reason, lower case, e.g. `client_initiated`, `room_deleted`."""


class TrackPublished(EventPayload):
    """A participant published a track (room `track_published`, or
    `local_track_published` for the agent's own tracks)."""

    TYPE: ClassVar[str] = "turnlog.track.published.v1"

    participant_identity: Personal
    """Identity of the publishing participant."""
    participant_sid: str
    """Sid of the publishing participant."""
    track_sid: str
    """Track sid."""
    kind: str
    """Track kind, lower case: `audio` or `video`."""
    source: str
    """Track source, lower case: `microphone`, `camera`, `screen_share`,
    `screen_share_audio` or `unknown`."""
    name: str | None = None
    """Track name given by the publisher."""
    mime_type: str | None = None
    """Codec mime type, e.g. `audio/opus`."""
    muted: bool = False
    """Whether the track was muted when published."""
    local: bool = False
    """True when the agent itself published the track."""


class TrackUnpublished(EventPayload):
    """A participant unpublished a track (room `track_unpublished`, or
    `local_track_unpublished`)."""

    TYPE: ClassVar[str] = "turnlog.track.unpublished.v1"

    participant_identity: Personal
    """Identity of the participant that unpublished."""
    participant_sid: str
    """Sid of the participant that unpublished."""
    track_sid: str
    """Track sid."""
    kind: str | None = None
    """Track kind, lower case: `audio` or `video`."""
    source: str | None = None
    """Track source, lower case, as in `track.published`."""
    local: bool = False
    """True when the agent itself unpublished the track."""


class ErrorOccurred(TurnScoped):
    """A component of the session failed (AgentSession `error`)."""

    TYPE: ClassVar[str] = "turnlog.error.v1"

    error: ErrorDetail
    """What failed and how."""
