"""Who holds the floor: user and agent states, interruptions, overlapping speech."""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from turnlog.schemas.base import TurnScoped, UtcDatetime

UserState: TypeAlias = Literal["speaking", "listening", "away"]
"""LiveKit `UserState`."""

AgentState: TypeAlias = Literal["initializing", "idle", "listening", "thinking", "speaking"]
"""LiveKit `AgentState`."""


class UserStateChanged(TurnScoped):
    """The user started or stopped speaking, or went away
    (AgentSession `user_state_changed`). The envelope `time` is LiveKit's `created_at`,
    which for speech is backdated to when VAD heard the change."""

    TYPE: ClassVar[str] = "turnlog.user.state_changed.v1"

    old_state: UserState
    """State before the change."""
    new_state: UserState
    """State after the change."""


class AgentStateChanged(TurnScoped):
    """The agent changed state (AgentSession `agent_state_changed`)."""

    TYPE: ClassVar[str] = "turnlog.agent.state_changed.v1"

    old_state: AgentState
    """State before the change."""
    new_state: AgentState
    """State after the change."""


class AgentFalseInterruptionDetected(TurnScoped):
    """The agent paused for what turned out not to be an interruption
    (AgentSession `agent_false_interruption`)."""

    TYPE: ClassVar[str] = "turnlog.agent.false_interruption.v1"

    resumed: bool
    """Whether the paused speech was resumed automatically."""


class OverlappingSpeechDetected(TurnScoped):
    """The user spoke while the agent was speaking, and the adaptive interruption detector
    judged it (AgentSession `overlapping_speech`): an interruption, or a backchannel such as
    "mm-hmm". Durations in seconds."""

    TYPE: ClassVar[str] = "turnlog.user.overlapping_speech.v1"

    is_interruption: bool
    """Whether the overlap was judged an interruption (False: a backchannel, or
    inconclusive when `agent_ended`)."""
    agent_ended: bool = False
    """True when the overlap ended because the agent finished speaking; then
    `is_interruption` is inconclusive."""
    detected_at: UtcDatetime | None = None
    """When the overlap was detected (UTC)."""
    overlap_started_at: UtcDatetime | None = None
    """When the overlapping speech started (UTC)."""
    probability: float = 0.0
    """Conservative estimated probability that it is an interruption, 0 to 1."""
    total_duration: float = 0.0
    """Round-trip seconds of the detection inference."""
    prediction_duration: float = 0.0
    """Seconds the model itself spent on the inference."""
    detection_delay: float = 0.0
    """Seconds from the onset of the speech to the final prediction."""
    num_requests: int = 0
    """Inference requests sent for this overlap."""
