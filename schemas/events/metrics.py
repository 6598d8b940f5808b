"""Component metrics as LiveKit collects them (AgentSession `metrics_collected`).

One event type, `metrics.collected`, whose `metrics` is a union discriminated by `kind`,
one member per LiveKit metrics class. Field names are LiveKit's; durations are seconds,
as LiveKit measures them. LiveKit's `metadata` (model name and provider) is flattened into
`provider` and `model`, and its unix `timestamp` becomes a UTC datetime.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, TypeAlias

from pydantic import Field

from turnlog.schemas.base import Record, TurnScoped, UtcDatetime


class _Metrics(Record):
    timestamp: UtcDatetime
    """LiveKit's timestamp of the measurement (UTC)."""
    provider: str | None = None
    """Provider of the measured component, from LiveKit's metrics metadata."""
    model: str | None = None
    """Model of the measured component, from LiveKit's metrics metadata."""


class SttMetrics(_Metrics):
    """Speech-to-text request metrics (LiveKit `STTMetrics`)."""

    kind: Literal["stt"] = "stt"
    """Discriminator."""
    label: str
    """LiveKit label of the STT, e.g. `livekit.plugins.deepgram.stt.STT`."""
    request_id: str
    """Provider or LiveKit request id."""
    duration: float
    """Request duration in seconds; 0.0 for a streaming STT."""
    audio_duration: float
    """Seconds of audio pushed to the STT; 0.0 when unknown."""
    streamed: bool
    """Whether the STT streams (e.g. over a websocket)."""
    input_tokens: int = 0
    """Input tokens, audio and text (token-billed STT)."""
    output_tokens: int = 0
    """Output tokens (token-billed STT)."""
    total_tokens: int = 0
    """Input plus output tokens."""
    input_audio_tokens: int = 0
    """Audio input tokens, a subset of `input_tokens`."""
    acquire_time: float = 0.0
    """Seconds to acquire the connection (websocket only)."""
    connection_reused: bool = False
    """Whether the connection came from a pool (websocket only)."""


class LlmMetrics(_Metrics):
    """LLM request metrics (LiveKit `LLMMetrics`)."""

    kind: Literal["llm"] = "llm"
    """Discriminator."""
    label: str
    """LiveKit label of the LLM."""
    request_id: str
    """Provider request id."""
    duration: float
    """Seconds from request to the end of the response."""
    ttft: float
    """Seconds to the first generated token; -1 if the response generated none."""
    cancelled: bool
    """Whether the request was cancelled (e.g. the user interrupted)."""
    completion_tokens: int
    """Output tokens, including reasoning tokens."""
    prompt_tokens: int
    """Input tokens."""
    prompt_cached_tokens: int
    """Input tokens read from the provider's prompt cache."""
    total_tokens: int
    """Prompt plus completion tokens."""
    tokens_per_second: float
    """Output tokens per second."""
    cache_creation_tokens: int = 0
    """Input tokens written to the prompt cache (e.g. Anthropic cache writes)."""
    reasoning_tokens: int = 0
    """Completion tokens spent on hidden reasoning; already in `completion_tokens`."""
    speech_id: str | None = None
    """Id of the speech this request generated, if any."""


class DecisionMetrics(_Metrics):
    """Metrics of an LLM decision request, e.g. a turn or interruption classifier
    (LiveKit `DecisionMetrics`)."""

    kind: Literal["decision"] = "decision"
    """Discriminator."""
    label: str
    """LiveKit label of the component."""
    request_id: str
    """Provider request id."""
    duration: float
    """Request duration in seconds."""
    input_tokens: int | None = None
    """Input tokens, when reported."""
    output_tokens: int | None = None
    """Output tokens, when reported."""


class TtsMetrics(_Metrics):
    """Text-to-speech request metrics (LiveKit `TTSMetrics`)."""

    kind: Literal["tts"] = "tts"
    """Discriminator."""
    label: str
    """LiveKit label of the TTS."""
    request_id: str
    """Provider request id."""
    ttfb: float
    """Seconds to the first byte of audio."""
    duration: float
    """Request duration in seconds."""
    audio_duration: float
    """Seconds of audio synthesized."""
    cancelled: bool
    """Whether the request was cancelled."""
    characters_count: int
    """Characters synthesized (character-billed TTS)."""
    streamed: bool
    """Whether the TTS streams."""
    input_tokens: int = 0
    """Input text tokens (token-billed TTS)."""
    output_tokens: int = 0
    """Output audio tokens (token-billed TTS)."""
    acquire_time: float = 0.0
    """Seconds to acquire the connection (websocket only)."""
    connection_reused: bool = False
    """Whether the connection came from a pool (websocket only)."""
    segment_id: str | None = None
    """Id of the synthesized segment."""
    speech_id: str | None = None
    """Id of the speech the audio belongs to."""


class VadMetrics(_Metrics):
    """Voice activity detection metrics (LiveKit `VADMetrics`)."""

    kind: Literal["vad"] = "vad"
    """Discriminator."""
    label: str
    """LiveKit label of the VAD."""
    idle_time: float
    """Seconds the VAD was idle in the reporting window."""
    inference_duration_total: float
    """Seconds spent in inference in the reporting window."""
    inference_count: int
    """Inferences run in the reporting window."""


class EouMetrics(_Metrics):
    """End-of-utterance metrics of one user turn (LiveKit `EOUMetrics`)."""

    kind: Literal["eou"] = "eou"
    """Discriminator."""
    end_of_utterance_delay: float
    """Seconds from the end of speech (VAD) to the decision that the user's turn ended;
    0.0 if the end of speech was not detected."""
    transcription_delay: float
    """Seconds from the end of the user's speech to the final transcript; 0.0 if the end
    of speech was not detected."""
    on_user_turn_completed_delay: float
    """Seconds spent in the developer's `Agent.on_user_turn_completed`."""
    speech_id: str | None = None
    """Id of the speech answering this turn."""


class EotInferenceMetrics(_Metrics):
    """One inference of the end-of-turn model (LiveKit `EOTInferenceMetrics`)."""

    kind: Literal["eot_inference"] = "eot_inference"
    """Discriminator."""
    total_duration: float
    """Seconds from the earliest audio of the inference to the response."""
    detection_delay: float
    """Seconds from the latest audio of the inference to the response."""
    prediction_duration: float
    """Seconds the model itself spent on the inference."""
    num_requests: int = 1
    """Inference requests made for this prediction."""


class CachedTokenDetails(Record):
    """Breakdown of a realtime response's cached input tokens."""

    audio_tokens: int = 0
    """Cached audio tokens."""
    text_tokens: int = 0
    """Cached text tokens."""
    image_tokens: int = 0
    """Cached image tokens."""


class InputTokenDetails(Record):
    """Breakdown of a realtime response's input tokens."""

    audio_tokens: int = 0
    """Audio input tokens."""
    text_tokens: int = 0
    """Text input tokens."""
    image_tokens: int = 0
    """Image input tokens."""
    cached_tokens: int = 0
    """Input tokens read from cache."""
    cached_tokens_details: CachedTokenDetails | None = None
    """Breakdown of `cached_tokens`, when reported."""


class OutputTokenDetails(Record):
    """Breakdown of a realtime response's output tokens."""

    text_tokens: int = 0
    """Text output tokens."""
    audio_tokens: int = 0
    """Audio output tokens."""
    image_tokens: int = 0
    """Image output tokens (deprecated by LiveKit, always 0 now)."""


class RealtimeModelMetrics(_Metrics):
    """Metrics of one realtime (speech-to-speech) model response
    (LiveKit `RealtimeModelMetrics`); `timestamp` is the response creation."""

    kind: Literal["realtime_model"] = "realtime_model"
    """Discriminator."""
    request_id: str
    """Provider response id."""
    input_token_details: InputTokenDetails
    """Breakdown of the input tokens."""
    output_token_details: OutputTokenDetails
    """Breakdown of the output tokens."""
    label: str = ""
    """LiveKit label of the model."""
    duration: float = 0.0
    """Seconds from response creation to done."""
    session_duration: float = 0.0
    """Seconds the session connection has lasted (session-billed models)."""
    ttft: float = -1
    """Seconds to the first audio token; -1 if unavailable or none was sent."""
    cancelled: bool = False
    """Whether the response was cancelled."""
    input_tokens: int = 0
    """Input tokens of the response, text and audio."""
    output_tokens: int = 0
    """Output tokens of the response, text and audio."""
    total_tokens: int = 0
    """Total tokens of the response."""
    tokens_per_second: float = 0.0
    """Output tokens per second."""
    acquire_time: float = 0.0
    """Seconds to acquire the connection (websocket only)."""
    connection_reused: bool = False
    """Whether the connection came from a pool (websocket only)."""


class InterruptionMetrics(_Metrics):
    """Adaptive interruption detection metrics (LiveKit `InterruptionMetrics`); the counts
    are running totals for the session."""

    kind: Literal["interruption"] = "interruption"
    """Discriminator."""
    total_duration: float
    """Round-trip seconds of the latest inference."""
    prediction_duration: float
    """Seconds the model spent on the latest inference."""
    detection_delay: float
    """Seconds from the onset of speech to the latest final prediction."""
    num_interruptions: int
    """Interruptions detected so far."""
    num_backchannels: int
    """Backchannels detected so far."""
    num_requests: int
    """Requests sent to the detection model so far."""


class AvatarMetrics(_Metrics):
    """Avatar playback metrics (LiveKit `AvatarMetrics`)."""

    kind: Literal["avatar"] = "avatar"
    """Discriminator."""
    playback_latency: float = 0.0
    """Seconds from forwarding the first audio frame to the avatar to playback start."""
    session_started_time: UtcDatetime | None = None
    """When the avatar session started (UTC)."""
    avatar_joined_time: UtcDatetime | None = None
    """When the avatar participant joined and started its video track (UTC)."""


AgentMetrics: TypeAlias = Annotated[
    SttMetrics
    | LlmMetrics
    | DecisionMetrics
    | TtsMetrics
    | VadMetrics
    | EouMetrics
    | EotInferenceMetrics
    | RealtimeModelMetrics
    | InterruptionMetrics
    | AvatarMetrics,
    Field(discriminator="kind"),
]


class MetricsCollected(TurnScoped):
    """A component reported metrics (AgentSession `metrics_collected`)."""

    TYPE: ClassVar[str] = "turnlog.metrics.collected.v1"

    metrics: AgentMetrics
    """The metrics, discriminated by `kind`."""
