"""What was said: transcripts, committed conversation items, speech, agent handoffs."""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from pydantic import Field

from turnlog.schemas.base import ModelInfo, Record, TurnScoped, UtcDatetime
from turnlog.schemas.personal import Personal

ChatRole: TypeAlias = Literal["user", "assistant", "system", "developer"]
"""LiveKit `ChatRole`."""


class UserTranscribed(TurnScoped):
    """Speech-to-text produced a transcript of the user, interim or final
    (AgentSession `user_input_transcribed`)."""

    TYPE: ClassVar[str] = "turnlog.user.transcribed.v1"

    transcript: Personal
    """The transcribed text; an interim result is replaced by later ones."""
    is_final: bool
    """True for a final transcript of a segment, False for an interim one."""
    language: str | None = None
    """Detected or configured language, BCP-47, e.g. `en`, `fr-FR`."""
    confidence: float | None = None
    """STT confidence, 0 to 1, when the provider reports one. livekit-agents 1.8.9 does
    not put it on this hook; the committed user message carries `transcript_confidence`."""
    speaker_id: str | None = None
    """Speaker label from diarization, when the STT provides one."""
    item_id: str | None = None
    """Provider id of the transcribed input item, when available (realtime models)."""


class MessageMetrics(Record):
    """Per-turn latency metrics LiveKit attaches to a committed message
    (`ChatMessage.metrics`). Every field is optional: user messages carry the first group,
    assistant messages the second. Durations in seconds."""

    started_speaking_at: UtcDatetime | None = None
    """When the speaker (user or agent) started speaking (UTC)."""
    stopped_speaking_at: UtcDatetime | None = None
    """When the speaker stopped speaking (UTC)."""
    transcription_delay: float | None = None
    """User message: seconds from the end of the user's speech to the final transcript."""
    end_of_turn_delay: float | None = None
    """User message: seconds from the end of speech to the decision that the user's turn
    ended (end-of-utterance delay)."""
    on_user_turn_completed_delay: float | None = None
    """User message: seconds spent in the developer's `Agent.on_user_turn_completed`."""
    llm_node_ttft: float | None = None
    """Assistant message: seconds until `llm_node` returned its first token."""
    llm_node_tps: float | None = None
    """Assistant message: LLM output tokens per second over the streaming window."""
    llm_node_ttfs: float | None = None
    """Assistant message: seconds from LLM generation start to the first sentence reaching
    the TTS."""
    tts_node_ttfb: float | None = None
    """Assistant message: seconds until `tts_node` returned its first audio chunk, after
    the first text was sent."""
    playback_latency: float | None = None
    """Assistant message: seconds from forwarding the first audio frame to the audio output
    reporting playback started."""
    e2e_latency: float | None = None
    """Assistant message: seconds from the end of the user's speech to the agent starting
    to respond (total response latency)."""
    provider_request_ids: tuple[str, ...] = ()
    """Assistant message: provider request or response ids of this turn, to find it in the
    provider's logs."""
    stt: ModelInfo | None = None
    """Speech-to-text provider and model of this turn."""
    llm: ModelInfo | None = None
    """LLM provider and model of this turn."""
    tts: ModelInfo | None = None
    """Text-to-speech provider and model of this turn."""


class ConversationItemAdded(TurnScoped):
    """A user or assistant message was committed to the chat history
    (AgentSession `conversation_item_added` with a `ChatMessage`)."""

    TYPE: ClassVar[str] = "turnlog.conversation.item_added.v1"

    item_id: str
    """LiveKit chat item id (`ChatMessage.id`)."""
    role: ChatRole
    """Who the message is from."""
    text: Personal
    """Text content, with LiveKit's expressive markup removed; empty when the message has
    no text."""
    interrupted: bool = False
    """Whether the assistant's speech was interrupted before it finished."""
    transcript_confidence: float | None = None
    """User message: STT confidence of the transcript, 0 to 1, when reported."""
    agent_id: str | None = None
    """Id of the `Agent` that was active when the message was added."""
    metrics: MessageMetrics = Field(default_factory=MessageMetrics)
    """Per-turn latency metrics."""


class SpeechCreated(TurnScoped):
    """The agent scheduled a new speech (AgentSession `speech_created`)."""

    TYPE: ClassVar[str] = "turnlog.speech.created.v1"

    speech_id: str
    """Id of the `SpeechHandle`; metrics of this speech carry it as `speech_id`."""
    user_initiated: bool
    """True when created through the public API (`say`, `generate_reply`)."""
    source: Literal["say", "generate_reply"]
    """How the speech was created."""
    allow_interruptions: bool | None = None
    """Whether the user may interrupt this speech."""
    input_modality: Literal["text", "audio"] | None = None
    """Modality of the input the speech answers, when known."""


class AgentHandedOff(TurnScoped):
    """Control moved from one `Agent` to another (AgentSession `conversation_item_added`
    with an `AgentHandoff` item)."""

    TYPE: ClassVar[str] = "turnlog.agent.handoff.v1"

    new_agent_id: str
    """Id of the agent taking over."""
    old_agent_id: str | None = None
    """Id of the agent handing over; None for the first agent of the session."""
    item_id: str | None = None
    """LiveKit chat item id of the handoff item."""


class UserTurnTimedOut(TurnScoped):
    """The user spoke but no transcript arrived in time
    (AgentSession `user_transcription_timeout`)."""

    TYPE: ClassVar[str] = "turnlog.user.turn_timeout.v1"

    speech_duration: float
    """Seconds of VAD-detected speech in the turn that produced no transcript."""
    vad_speech_started_at: UtcDatetime
    """When VAD first detected speech in this turn (UTC)."""
