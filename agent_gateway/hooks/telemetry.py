"""Component metrics and usage: AgentSession `metrics_collected` and
`session_usage_updated`. Pure functions from a livekit-agents event to a catalog payload.

Both map generically: LiveKit's `type` (`llm_metrics`, `stt_usage`...) names the catalog
member (`kind` `llm`, `stt`...), and only the fields the catalog models are copied. A field
LiveKit adds later is left out until the catalog adds it (a unit test in `schemas` compares
the two), instead of failing the hook on the voice path.
"""

from __future__ import annotations

from typing import Any, Final

from livekit.agents.metrics import AgentMetrics as LiveKitMetrics
from livekit.agents.metrics.usage import ModelUsage as LiveKitUsage
from livekit.agents.voice.events import MetricsCollectedEvent, SessionUsageUpdatedEvent

from turnlog.agent_gateway.hooks.convert import utc, utc_or_none
from turnlog.schemas import (
    AvatarMetrics,
    DecisionMetrics,
    EotInferenceMetrics,
    EotUsage,
    EouMetrics,
    InterruptionMetrics,
    InterruptionUsage,
    LlmMetrics,
    LlmUsage,
    MetricsCollected,
    RealtimeModelMetrics,
    Record,
    SttMetrics,
    SttUsage,
    TtsMetrics,
    TtsUsage,
    UsageUpdated,
    VadMetrics,
)
from turnlog.schemas.events.metrics import AgentMetrics
from turnlog.schemas.events.usage import ModelUsage

_METRICS: Final[dict[str, type[Record]]] = {
    "stt_metrics": SttMetrics,
    "llm_metrics": LlmMetrics,
    "decision_metrics": DecisionMetrics,
    "tts_metrics": TtsMetrics,
    "vad_metrics": VadMetrics,
    "eou_metrics": EouMetrics,
    "eot_inference_metrics": EotInferenceMetrics,
    "realtime_model_metrics": RealtimeModelMetrics,
    "interruption_metrics": InterruptionMetrics,
    "avatar_metrics": AvatarMetrics,
}
_USAGE: Final[dict[str, type[Record]]] = {
    "llm_usage": LlmUsage,
    "tts_usage": TtsUsage,
    "stt_usage": SttUsage,
    "interruption_usage": InterruptionUsage,
    "eot_usage": EotUsage,
}
_AVATAR_TIMES: Final = ("session_started_time", "avatar_joined_time")

USER_SIDE_METRICS: Final = frozenset(
    {"stt_metrics", "vad_metrics", "eot_inference_metrics", "interruption_metrics"}
)
"""Metrics measured on the user's audio: they belong to the turn the user is in, never
to a speech."""


class UnmappedLiveKitTypeError(TypeError):
    """LiveKit sent a metrics or usage class the catalog does not model (a bug: add it)."""


def map_metrics_collected(ev: MetricsCollectedEvent, *, turn_id: str | None) -> MetricsCollected:
    """`metrics_collected` -> `metrics.collected`."""
    return MetricsCollected(turn_id=turn_id, metrics=map_metrics(ev.metrics))


def map_metrics(metrics: LiveKitMetrics) -> AgentMetrics:
    """One LiveKit metrics object -> the catalog member of the same kind; `metadata`
    flattened into `provider` / `model`, unix times into UTC datetimes."""
    model = _METRICS.get(metrics.type)
    if model is None:
        raise UnmappedLiveKitTypeError(f"metrics type {metrics.type!r} is not in the catalog")
    values = _known_fields(metrics.model_dump(exclude={"type", "metadata"}), model)
    values["timestamp"] = utc(metrics.timestamp)
    for key in _AVATAR_TIMES:
        if key in values:
            values[key] = utc_or_none(values[key])
    if metrics.metadata is not None:
        values["provider"] = metrics.metadata.model_provider
        values["model"] = metrics.metadata.model_name
    return model.model_validate(values)  # type: ignore[return-value]


def metrics_speech_id(ev: MetricsCollectedEvent) -> str | None:
    """The speech the metrics name (LLM, TTS and end-of-utterance metrics carry one)."""
    speech_id = getattr(ev.metrics, "speech_id", None)
    return speech_id if isinstance(speech_id, str) else None


def map_session_usage_updated(ev: SessionUsageUpdatedEvent) -> UsageUpdated:
    """`session_usage_updated` -> `usage.updated` (cumulative totals of the session)."""
    return UsageUpdated(model_usage=tuple(map_usage(usage) for usage in ev.usage.model_usage))


def map_usage(usage: LiveKitUsage) -> ModelUsage:
    """One LiveKit model usage -> the catalog member of the same kind."""
    model = _USAGE.get(usage.type)
    if model is None:
        raise UnmappedLiveKitTypeError(f"usage type {usage.type!r} is not in the catalog")
    return model.model_validate(  # type: ignore[return-value]
        _known_fields(usage.model_dump(exclude={"type"}), model)
    )


def _known_fields(values: dict[str, Any], model: type[Record]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key in model.model_fields}
