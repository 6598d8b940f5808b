"""What was said: AgentSession transcripts, committed chat items, speeches.

Pure functions from a livekit-agents event to a catalog payload; the recorder passes the
turn id it assigned.
"""

from __future__ import annotations

from livekit.agents import llm
from livekit.agents.voice.events import (
    SpeechCreatedEvent,
    UserInputTranscribedEvent,
    UserTranscriptionTimeoutEvent,
)

from turnlog.agent_gateway.hooks.convert import utc, utc_or_none
from turnlog.schemas import (
    AgentHandedOff,
    ConversationItemAdded,
    MessageMetrics,
    ModelInfo,
    SpeechCreated,
    UserTranscribed,
    UserTurnTimedOut,
)


def map_user_input_transcribed(
    ev: UserInputTranscribedEvent, *, turn_id: str | None
) -> UserTranscribed:
    """`user_input_transcribed` (interim or final) -> `user.transcribed`."""
    return UserTranscribed(
        turn_id=turn_id,
        transcript=ev.transcript,
        is_final=ev.is_final,
        language=str(ev.language) if ev.language else None,
        speaker_id=ev.speaker_id,
        item_id=ev.item_id,
    )


def map_user_transcription_timeout(
    ev: UserTranscriptionTimeoutEvent, *, turn_id: str | None
) -> UserTurnTimedOut:
    """`user_transcription_timeout` -> `user.turn_timeout`."""
    return UserTurnTimedOut(
        turn_id=turn_id,
        speech_duration=ev.speech_duration,
        vad_speech_started_at=utc(ev.vad_speech_started_at),
    )


def map_chat_message(
    message: llm.ChatMessage, *, turn_id: str | None, agent_id: str | None
) -> ConversationItemAdded:
    """`conversation_item_added` with a `ChatMessage` -> `conversation.item_added`.

    The text is `text_content` (LiveKit's expressive markup removed); `agent_id` is the
    agent active when the message was committed."""
    return ConversationItemAdded(
        turn_id=turn_id,
        item_id=message.id,
        role=message.role,
        text=message.text_content or "",
        interrupted=message.interrupted,
        transcript_confidence=message.transcript_confidence,
        agent_id=agent_id,
        metrics=map_message_metrics(message.metrics),
    )


def map_message_metrics(report: llm.MetricsReport) -> MessageMetrics:
    """A `ChatMessage.metrics` report -> `MessageMetrics` (unix times become UTC
    datetimes, the `*_metadata` dicts become `ModelInfo`)."""
    return MessageMetrics(
        started_speaking_at=utc_or_none(report.get("started_speaking_at")),
        stopped_speaking_at=utc_or_none(report.get("stopped_speaking_at")),
        transcription_delay=report.get("transcription_delay"),
        end_of_turn_delay=report.get("end_of_turn_delay"),
        on_user_turn_completed_delay=report.get("on_user_turn_completed_delay"),
        llm_node_ttft=report.get("llm_node_ttft"),
        llm_node_tps=report.get("llm_node_tps"),
        llm_node_ttfs=report.get("llm_node_ttfs"),
        tts_node_ttfb=report.get("tts_node_ttfb"),
        playback_latency=report.get("playback_latency"),
        e2e_latency=report.get("e2e_latency"),
        provider_request_ids=tuple(report.get("provider_request_ids", ())),
        stt=_model_info(report.get("stt_metadata")),
        llm=_model_info(report.get("llm_metadata")),
        tts=_model_info(report.get("tts_metadata")),
    )


def _model_info(metadata: llm.chat_context.MetricsMetadata | None) -> ModelInfo | None:
    if not metadata:
        return None
    return ModelInfo(provider=metadata.get("model_provider"), model=metadata.get("model_name"))


def map_agent_handoff(item: llm.AgentHandoff, *, turn_id: str | None) -> AgentHandedOff:
    """`conversation_item_added` with an `AgentHandoff` -> `agent.handoff` (the first
    agent of a session arrives as a handoff from None)."""
    return AgentHandedOff(
        turn_id=turn_id,
        new_agent_id=item.new_agent_id,
        old_agent_id=item.old_agent_id,
        item_id=item.id,
    )


def map_speech_created(ev: SpeechCreatedEvent, *, turn_id: str | None) -> SpeechCreated:
    """`speech_created` -> `speech.created`."""
    handle = ev.speech_handle
    return SpeechCreated(
        turn_id=turn_id,
        speech_id=handle.id,
        user_initiated=ev.user_initiated,
        source=ev.source,
        allow_interruptions=handle.allow_interruptions,
        input_modality=handle.input_details.modality,
    )
