"""metrics_collected and session_usage_updated, with every LiveKit metrics and usage class."""

from __future__ import annotations

import typing

import pytest
from livekit.agents import metrics as lk
from livekit.agents.metrics import usage as lk_usage
from livekit.agents.metrics.base import RealtimeModelMetrics as LkRealtimeMetrics
from livekit.agents.voice.events import MetricsCollectedEvent, SessionUsageUpdatedEvent

from turnlog.agent_gateway.hooks import telemetry
from turnlog.agent_gateway.hooks.convert import utc
from turnlog.schemas import (
    AvatarMetrics,
    EouMetrics,
    LlmMetrics,
    LlmUsage,
    SttUsage,
    TtsMetrics,
)
from turnlog.schemas import RealtimeModelMetrics as RealtimeMetricsRecord

pytestmark = pytest.mark.unit

# pydantic resolves the nested token-detail models of LiveKit's realtime metrics in the
# namespace of the module that first builds one: this one, under the name LiveKit uses
RealtimeModelMetrics = LkRealtimeMetrics

T0 = 1_767_225_600.0
META = lk.base.Metadata(model_name="nova-3", model_provider="deepgram")

ONE_OF_EACH: list[lk.AgentMetrics] = [
    lk.STTMetrics(
        label="stt", request_id="r1", timestamp=T0, duration=0.0, audio_duration=2.0,
        streamed=True, metadata=META,
    ),
    lk.LLMMetrics(
        label="llm", request_id="r2", timestamp=T0, duration=0.9, ttft=0.3, cancelled=False,
        completion_tokens=12, prompt_tokens=80, prompt_cached_tokens=64, total_tokens=92,
        tokens_per_second=40.0, speech_id="speech-1",
    ),
    lk.base.DecisionMetrics(label="d", request_id="r3", timestamp=T0, duration=0.1),
    lk.TTSMetrics(
        label="tts", request_id="r4", timestamp=T0, ttfb=0.2, duration=0.8, audio_duration=3.0,
        cancelled=False, characters_count=42, streamed=False, speech_id="speech-1",
    ),
    lk.VADMetrics(
        label="vad", timestamp=T0, idle_time=0.5, inference_duration_total=0.02,
        inference_count=30,
    ),
    lk.EOUMetrics(
        timestamp=T0, end_of_utterance_delay=0.6, transcription_delay=0.2,
        on_user_turn_completed_delay=0.0, speech_id="speech-1",
    ),
    lk.base.EOTInferenceMetrics(
        timestamp=T0, total_duration=0.05, detection_delay=0.04, prediction_duration=0.01
    ),
    LkRealtimeMetrics(
        request_id="r5", timestamp=T0,
        input_token_details=LkRealtimeMetrics.InputTokenDetails(audio_tokens=10),
        output_token_details=LkRealtimeMetrics.OutputTokenDetails(audio_tokens=20),
    ),
    lk.base.InterruptionMetrics(
        timestamp=T0, total_duration=0.1, prediction_duration=0.05, detection_delay=0.3,
        num_interruptions=1, num_backchannels=2, num_requests=3,
    ),
    lk.base.AvatarMetrics(timestamp=T0, playback_latency=0.1, session_started_time=T0 - 5),
]


def test_one_of_each_livekit_metrics_class() -> None:
    assert {type(m) for m in ONE_OF_EACH} == set(typing.get_args(lk.AgentMetrics))


@pytest.mark.parametrize("metrics", ONE_OF_EACH, ids=lambda m: m.type)
def test_every_metrics_class_maps_to_its_kind(metrics: lk.AgentMetrics) -> None:
    mapped = telemetry.map_metrics_collected(
        MetricsCollectedEvent(metrics=metrics), turn_id="turn-1"
    )

    assert mapped.metrics.kind == metrics.type.removesuffix("_metrics")
    assert mapped.metrics.timestamp == utc(T0)
    copied = set(type(metrics).model_fields) - {"type", "metadata", "timestamp"}
    dumped = mapped.metrics.model_dump()
    for field in copied & set(dumped):
        value = getattr(metrics, field)
        if isinstance(value, float | int | str | bool) and not field.endswith("_time"):
            assert dumped[field] == value, field


def test_metadata_becomes_provider_and_model() -> None:
    mapped = telemetry.map_metrics(ONE_OF_EACH[0])

    assert (mapped.provider, mapped.model) == ("deepgram", "nova-3")


def test_llm_tts_and_eou_metrics_name_their_speech() -> None:
    events = [MetricsCollectedEvent(metrics=m) for m in ONE_OF_EACH]

    named = {e.metrics.type: telemetry.metrics_speech_id(e) for e in events}

    assert {t for t, s in named.items() if s} == {"llm_metrics", "tts_metrics", "eou_metrics"}
    assert set(named.values()) == {"speech-1", None}


def test_nested_and_time_fields() -> None:
    realtime = telemetry.map_metrics(ONE_OF_EACH[7])
    avatar = telemetry.map_metrics(ONE_OF_EACH[9])
    llm = telemetry.map_metrics(ONE_OF_EACH[1])
    tts = telemetry.map_metrics(ONE_OF_EACH[3])
    eou = telemetry.map_metrics(ONE_OF_EACH[5])

    assert isinstance(realtime, RealtimeMetricsRecord)
    assert realtime.input_token_details.audio_tokens == 10
    assert realtime.output_token_details.audio_tokens == 20
    assert isinstance(avatar, AvatarMetrics)
    assert avatar.session_started_time == utc(T0 - 5)
    assert avatar.avatar_joined_time is None
    assert isinstance(llm, LlmMetrics)
    assert (llm.ttft, llm.prompt_cached_tokens, llm.speech_id) == (0.3, 64, "speech-1")
    assert isinstance(tts, TtsMetrics)
    assert tts.ttfb == 0.2
    assert isinstance(eou, EouMetrics)
    assert eou.end_of_utterance_delay == 0.6


def test_user_side_metrics_are_the_audio_ones() -> None:
    assert frozenset({"stt_metrics", "vad_metrics", "eot_inference_metrics",
                      "interruption_metrics"}) == telemetry.USER_SIDE_METRICS


def test_usage_totals_of_every_kind() -> None:
    usage = lk_usage.AgentSessionUsage(
        model_usage=[
            lk_usage.LLMModelUsage(provider="openai", model="gpt-4.1-mini", input_tokens=80,
                                   output_tokens=12, output_reasoning_tokens=3),
            lk_usage.TTSModelUsage(provider="festival", model="slt", characters_count=42,
                                   audio_duration=3.0),
            lk_usage.STTModelUsage(provider="deepgram", model="nova-3", audio_duration=2.0),
            lk_usage.InterruptionModelUsage(provider="livekit", model="adaptive",
                                            total_requests=3),
            lk_usage.EOTModelUsage(provider="livekit", model="turn-detector", total_requests=9),
        ]
    )

    mapped = telemetry.map_session_usage_updated(SessionUsageUpdatedEvent(usage=usage))

    kinds = [u.kind for u in mapped.model_usage]
    assert kinds == ["llm", "tts", "stt", "interruption", "eot"]
    llm, _, stt_usage, _, eot = mapped.model_usage
    assert isinstance(llm, LlmUsage)
    assert (llm.input_tokens, llm.output_tokens, llm.output_reasoning_tokens) == (80, 12, 3)
    assert isinstance(stt_usage, SttUsage)
    assert stt_usage.audio_duration == 2.0
    assert (eot.provider, eot.model) == ("livekit", "turn-detector")


def test_every_livekit_usage_class_maps() -> None:
    for usage_class in typing.get_args(lk_usage.ModelUsage):
        usage = usage_class(provider="p", model="m")
        assert telemetry.map_usage(usage).kind == usage.type.removesuffix("_usage")


def test_an_unknown_livekit_class_is_a_bug_not_a_silent_drop() -> None:
    class FutureMetrics(lk.base.VADMetrics):
        type: str = "future_metrics"  # type: ignore[assignment]

    odd = FutureMetrics(label="x", timestamp=T0, idle_time=0, inference_duration_total=0,
                        inference_count=0)

    with pytest.raises(telemetry.UnmappedLiveKitTypeError, match="future_metrics"):
        telemetry.map_metrics(odd)
