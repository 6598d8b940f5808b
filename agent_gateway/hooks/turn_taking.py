"""Who holds the floor: AgentSession user and agent states, false interruptions and
overlapping speech. Pure functions from a livekit-agents event to a catalog payload."""

from __future__ import annotations

from livekit.agents.inference.interruption import OverlappingSpeechEvent
from livekit.agents.voice.events import (
    AgentFalseInterruptionEvent,
    AgentStateChangedEvent,
    UserStateChangedEvent,
)

from turnlog.agent_gateway.hooks.convert import utc, utc_or_none
from turnlog.schemas import (
    AgentFalseInterruptionDetected,
    AgentStateChanged,
    OverlappingSpeechDetected,
    UserStateChanged,
)


def map_user_state_changed(ev: UserStateChangedEvent, *, turn_id: str | None) -> UserStateChanged:
    """`user_state_changed` -> `user.state_changed`."""
    return UserStateChanged(turn_id=turn_id, old_state=ev.old_state, new_state=ev.new_state)


def map_agent_state_changed(
    ev: AgentStateChangedEvent, *, turn_id: str | None
) -> AgentStateChanged:
    """`agent_state_changed` -> `agent.state_changed`."""
    return AgentStateChanged(turn_id=turn_id, old_state=ev.old_state, new_state=ev.new_state)


def map_agent_false_interruption(
    ev: AgentFalseInterruptionEvent, *, turn_id: str | None
) -> AgentFalseInterruptionDetected:
    """`agent_false_interruption` -> `agent.false_interruption`. Only `resumed` is read:
    the deprecated `message` / `extra_instructions` log a warning on access."""
    return AgentFalseInterruptionDetected(turn_id=turn_id, resumed=ev.resumed)


def map_overlapping_speech(
    ev: OverlappingSpeechEvent, *, turn_id: str | None
) -> OverlappingSpeechDetected:
    """`overlapping_speech` -> `user.overlapping_speech` (the audio and raw
    probabilities stay behind)."""
    return OverlappingSpeechDetected(
        turn_id=turn_id,
        is_interruption=ev.is_interruption,
        agent_ended=ev.agent_ended,
        detected_at=utc(ev.detected_at),
        overlap_started_at=utc_or_none(ev.overlap_started_at),
        probability=ev.probability,
        total_duration=ev.total_duration,
        prediction_duration=ev.prediction_duration,
        detection_delay=ev.detection_delay,
        num_requests=ev.num_requests,
    )
