"""Records the stream processors derive from the log, for `turnlog.turns` and
`turnlog.sessions`.

They travel in the same CloudEvents envelope as the log's events. Their `source` is
`/streams/{app}/{processor}`, their `sequence` is the sequence of the source event that
produced the record (so a rebuild reproduces it; gaps are expected), and their `id` comes
from `envelope.derived_event_id`, deterministic for the same reason.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from pydantic import Field

from turnlog.schemas.base import EventPayload, ModelInfo, UtcDatetime
from turnlog.schemas.events.session import CloseReason
from turnlog.schemas.personal import OptionalPersonal, PersonalTuple

SessionStatus: TypeAlias = Literal["active", "closed", "failed"]
"""`active` until `session.closed`; then `closed`, or `failed` when it closed on an error."""


class TurnCompleted(EventPayload):
    """One completed conversational turn, a user message and the agent's answer, with its
    latency breakdown (topic `turnlog.turns`, key `<session id>/<turn id>`). Latencies in
    seconds, None when LiveKit did not measure them (e.g. a text-only turn has no
    transcription delay).

    Built from the session's events in `sequence` order only: a turn is emitted once the
    session's contiguous prefix of sequences covers its first assistant message, then
    corrected (same turn id, higher `revision`) when a later fact of the turn enters the
    prefix."""

    TYPE: ClassVar[str] = "turnlog.turn.completed.v1"

    turn_id: str
    """Id of the turn, as on the turn's events."""
    interrupted: bool
    """Whether the user interrupted the agent's answer."""
    user_text: OptionalPersonal = None
    """The user's final transcript; None for a turn the agent started."""
    assistant_text: OptionalPersonal = None
    """What the agent said (up to the interruption, if any)."""
    user_item_id: str | None = None
    """Chat item id of the user message."""
    assistant_item_id: str | None = None
    """Chat item id of the assistant message."""
    agent_id: str | None = None
    """Id of the `Agent` that answered."""
    language: str | None = None
    """Language of the user's transcript, BCP-47."""
    transcript_confidence: float | None = None
    """STT confidence of the user's transcript, 0 to 1."""
    user_started_speaking_at: UtcDatetime | None = None
    """When the user started speaking (UTC)."""
    user_stopped_speaking_at: UtcDatetime | None = None
    """When the user stopped speaking (UTC)."""
    agent_started_speaking_at: UtcDatetime | None = None
    """When the agent started speaking its answer (UTC)."""
    end_of_turn_delay: float | None = None
    """Seconds from the end of the user's speech to the end-of-turn decision
    (end-of-utterance delay)."""
    transcription_delay: float | None = None
    """Seconds from the end of the user's speech to the final transcript (STT time to
    final)."""
    on_user_turn_completed_delay: float | None = None
    """Seconds spent in the developer's `Agent.on_user_turn_completed`."""
    llm_node_ttft: float | None = None
    """Seconds until the LLM returned its first token."""
    llm_node_ttfs: float | None = None
    """Seconds from LLM generation start to the first sentence reaching the TTS."""
    tts_node_ttfb: float | None = None
    """Seconds until the TTS returned its first audio, after the first text was sent."""
    playback_latency: float | None = None
    """Seconds from forwarding the first audio frame to playback start."""
    e2e_latency: float | None = None
    """Seconds from the end of the user's speech to the agent starting to respond (total
    response latency)."""
    tool_call_count: int = Field(default=0, ge=0)
    """Function tool calls made while answering."""
    stt: ModelInfo | None = None
    """Speech-to-text provider and model of the turn."""
    llm: ModelInfo | None = None
    """LLM provider and model of the turn."""
    tts: ModelInfo | None = None
    """Text-to-speech provider and model of the turn."""
    revision: int = Field(default=0, ge=0)
    """Version of this turn's record: the sequence of the latest event folded into the
    turn. A later fact of the turn (a late final transcript, another assistant message, a
    tool batch) gives a correction with the same `turn_id` and a higher revision; keep the
    record with the highest revision per key (`<session id>/<turn id>`). 0 for records
    built before revisions existed."""


class SessionSummarized(EventPayload):
    """The summary of one closed session (topic `turnlog.sessions`, key = session id,
    compacted: the latest record of a session replaces the earlier ones).

    Emitted only once `session.closed` and every earlier sequence of the session are in,
    so its counters cover the whole session; facts after the close emit a correction with
    a higher `revision`."""

    TYPE: ClassVar[str] = "turnlog.session.summarized.v1"

    room_name: str
    """Name of the room (also the envelope `subject`)."""
    agent_name: str
    """Name the worker registered; empty for automatic dispatch."""
    started_at: UtcDatetime
    """When the session started (UTC)."""
    status: SessionStatus
    """Where the session is in its life."""
    ended_at: UtcDatetime | None = None
    """When the session closed (UTC); None while active."""
    duration: float | None = None
    """Seconds from start to close; None while active."""
    close_reason: CloseReason | None = None
    """Why the session closed; None while active."""
    room_sid: str | None = None
    """LiveKit room sid."""
    job_id: str | None = None
    """LiveKit job id."""
    worker_id: str | None = None
    """LiveKit worker id."""
    agent_ids: tuple[str, ...] = ()
    """Ids of the `Agent`s that ran, in order of first activation (handoffs add more)."""
    participants: PersonalTuple = ()
    """Identities of the participants that joined, in order of first join."""
    turn_count: int = Field(default=0, ge=0)
    """Completed turns."""
    interruption_count: int = Field(default=0, ge=0)
    """Agent answers the user interrupted."""
    tool_call_count: int = Field(default=0, ge=0)
    """Function tool calls executed."""
    error_count: int = Field(default=0, ge=0)
    """Errors reported (`error` events)."""
    revision: int = Field(default=0, ge=0)
    """Version of this summary: the sequence of the latest event of the session folded
    into it (the close, or a fact after the close such as late usage, which gives a
    correction with a higher revision). Keep the record with the highest revision per
    session id. 0 for records built before revisions existed."""
