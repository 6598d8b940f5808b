"""Session usage per provider and model (AgentSession `session_usage_updated`)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, TypeAlias

from pydantic import Field

from turnlog.schemas.base import EventPayload, Record


class _ModelUsage(Record):
    provider: str
    """Provider name, e.g. `openai`; empty when LiveKit did not know it."""
    model: str
    """Model name, e.g. `gpt-4o-mini`; empty when LiveKit did not know it."""


class LlmUsage(_ModelUsage):
    """LLM and realtime model usage (LiveKit `LLMModelUsage`)."""

    kind: Literal["llm"] = "llm"
    """Discriminator."""
    input_tokens: int = 0
    """Input tokens."""
    input_cached_tokens: int = 0
    """Input tokens served from cache."""
    input_cache_creation_tokens: int = 0
    """Input tokens written to the prompt cache."""
    input_audio_tokens: int = 0
    """Audio input tokens."""
    input_cached_audio_tokens: int = 0
    """Cached audio input tokens."""
    input_text_tokens: int = 0
    """Text input tokens."""
    input_cached_text_tokens: int = 0
    """Cached text input tokens."""
    input_image_tokens: int = 0
    """Image input tokens."""
    input_cached_image_tokens: int = 0
    """Cached image input tokens."""
    output_tokens: int = 0
    """Output tokens."""
    output_audio_tokens: int = 0
    """Audio output tokens."""
    output_text_tokens: int = 0
    """Text output tokens."""
    output_reasoning_tokens: int = 0
    """Output tokens spent on hidden reasoning; already in `output_tokens`."""
    session_duration: float = 0.0
    """Seconds of session connection (session-billed models)."""


class TtsUsage(_ModelUsage):
    """Text-to-speech usage (LiveKit `TTSModelUsage`)."""

    kind: Literal["tts"] = "tts"
    """Discriminator."""
    input_tokens: int = 0
    """Input text tokens (token-billed TTS)."""
    output_tokens: int = 0
    """Output audio tokens (token-billed TTS)."""
    characters_count: int = 0
    """Characters synthesized (character-billed TTS)."""
    audio_duration: float = 0.0
    """Seconds of audio generated."""


class SttUsage(_ModelUsage):
    """Speech-to-text usage (LiveKit `STTModelUsage`)."""

    kind: Literal["stt"] = "stt"
    """Discriminator."""
    input_tokens: int = 0
    """Input tokens, audio and text (token-billed STT)."""
    input_audio_tokens: int = 0
    """Audio input tokens, a subset of `input_tokens`."""
    output_tokens: int = 0
    """Output text tokens (token-billed STT)."""
    audio_duration: float = 0.0
    """Seconds of audio processed."""


class InterruptionUsage(_ModelUsage):
    """Interruption detection model usage (LiveKit `InterruptionModelUsage`)."""

    kind: Literal["interruption"] = "interruption"
    """Discriminator."""
    total_requests: int = 0
    """Requests sent to the interruption detection model."""


class EotUsage(_ModelUsage):
    """End-of-turn model usage (LiveKit `EOTModelUsage`)."""

    kind: Literal["eot"] = "eot"
    """Discriminator."""
    total_requests: int = 0
    """Inference requests sent to the end-of-turn model."""


ModelUsage: TypeAlias = Annotated[
    LlmUsage | TtsUsage | SttUsage | InterruptionUsage | EotUsage,
    Field(discriminator="kind"),
]


class UsageUpdated(EventPayload):
    """The session's usage totals changed (AgentSession `session_usage_updated`).

    The totals are cumulative since the session started: the latest event of a session
    holds its usage; never sum these events."""

    TYPE: ClassVar[str] = "turnlog.usage.updated.v1"

    model_usage: tuple[ModelUsage, ...]
    """One entry per provider, model and kind, discriminated by `kind`."""
