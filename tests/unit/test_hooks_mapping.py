"""Mapping functions, each fed real livekit-agents event objects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from livekit.agents import llm
from livekit.agents.inference.interruption import OverlappingSpeechEvent
from livekit.agents.language import LanguageCode
from livekit.agents.voice.events import (
    AgentFalseInterruptionEvent,
    AgentStateChangedEvent,
    FunctionToolsExecutedEvent,
    SpeechCreatedEvent,
    ToolCallEnded,
    ToolCallStarted,
    ToolCallUpdated,
    ToolExecutionUpdatedEvent,
    ToolReplyUpdated,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
    UserTranscriptionTimeoutEvent,
)
from livekit.agents.voice.speech_handle import InputDetails, SpeechHandle

from turnlog.agent_gateway.hooks import conversation, tools, turn_taking
from turnlog.agent_gateway.hooks.convert import scrub, utc
from turnlog.schemas import (
    MessageMetrics,
    ModelInfo,
    ToolCallEndedUpdate,
    ToolCallProgressUpdate,
    ToolCallStartedUpdate,
    ToolReplyStatusUpdate,
)

pytestmark = pytest.mark.unit

T0 = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z
AT_T0 = datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)


def test_unix_times_become_aware_utc() -> None:
    assert utc(T0) == AT_T0
    assert utc(T0).tzinfo is UTC


# -- conversation


def test_interim_and_final_transcripts() -> None:
    interim = UserInputTranscribedEvent(transcript="what is", is_final=False)
    final = UserInputTranscribedEvent(
        transcript="what is a noun",
        is_final=True,
        language=LanguageCode("english"),
        speaker_id="S1",
        item_id="item-9",
    )

    mapped_interim = conversation.map_user_input_transcribed(interim, turn_id="turn-1")
    mapped_final = conversation.map_user_input_transcribed(final, turn_id="turn-1")

    assert (mapped_interim.transcript, mapped_interim.is_final) == ("what is", False)
    assert mapped_interim.language is None
    assert mapped_final.is_final
    assert mapped_final.language == "en"
    assert (mapped_final.speaker_id, mapped_final.item_id) == ("S1", "item-9")
    assert mapped_final.turn_id == "turn-1"


def test_transcription_timeout() -> None:
    ev = UserTranscriptionTimeoutEvent(speech_duration=1.5, vad_speech_started_at=T0)

    mapped = conversation.map_user_transcription_timeout(ev, turn_id="turn-4")

    assert mapped.speech_duration == 1.5
    assert mapped.vad_speech_started_at == AT_T0
    assert mapped.turn_id == "turn-4"


def test_user_message_with_its_metrics() -> None:
    message = llm.ChatMessage(
        role="user",
        content=["what is a verb"],
        transcript_confidence=0.91,
        metrics=llm.MetricsReport(
            started_speaking_at=T0,
            stopped_speaking_at=T0 + 1.5,
            transcription_delay=0.21,
            end_of_turn_delay=0.5,
            on_user_turn_completed_delay=0.001,
            stt_metadata={"model_name": "nova-3", "model_provider": "deepgram"},
        ),
    )

    mapped = conversation.map_chat_message(message, turn_id="turn-2", agent_id="tutor")

    assert mapped.item_id == message.id
    assert (mapped.role, mapped.text, mapped.interrupted) == ("user", "what is a verb", False)
    assert mapped.transcript_confidence == 0.91
    assert mapped.agent_id == "tutor"
    assert mapped.turn_id == "turn-2"
    assert mapped.metrics == MessageMetrics(
        started_speaking_at=AT_T0,
        stopped_speaking_at=utc(T0 + 1.5),
        transcription_delay=0.21,
        end_of_turn_delay=0.5,
        on_user_turn_completed_delay=0.001,
        stt=ModelInfo(provider="deepgram", model="nova-3"),
    )


def test_interrupted_assistant_message_with_its_metrics() -> None:
    message = llm.ChatMessage(
        role="assistant",
        content=["A verb is", "an action word."],
        interrupted=True,
        metrics=llm.MetricsReport(
            llm_node_ttft=0.41,
            llm_node_tps=52.0,
            llm_node_ttfs=0.6,
            tts_node_ttfb=0.18,
            playback_latency=0.0,
            e2e_latency=1.2,
            provider_request_ids=["req-1", "req-2"],
            llm_metadata={"model_name": "gpt-4.1-mini", "model_provider": "openai"},
            tts_metadata={"model_name": "cmu_us_slt", "model_provider": "festival"},
        ),
    )

    mapped = conversation.map_chat_message(message, turn_id="turn-2", agent_id=None)

    assert mapped.text == "A verb is\nan action word."
    assert mapped.interrupted
    assert mapped.metrics.llm_node_ttft == 0.41
    assert mapped.metrics.llm_node_tps == 52.0
    assert mapped.metrics.llm_node_ttfs == 0.6
    assert mapped.metrics.tts_node_ttfb == 0.18
    assert mapped.metrics.playback_latency == 0.0
    assert mapped.metrics.e2e_latency == 1.2
    assert mapped.metrics.provider_request_ids == ("req-1", "req-2")
    assert mapped.metrics.llm == ModelInfo(provider="openai", model="gpt-4.1-mini")
    assert mapped.metrics.tts == ModelInfo(provider="festival", model="cmu_us_slt")
    assert mapped.metrics.stt is None


def test_message_without_text_or_metrics() -> None:
    message = llm.ChatMessage(role="system", content=[])

    mapped = conversation.map_chat_message(message, turn_id=None, agent_id=None)

    assert mapped.text == ""
    assert mapped.metrics == MessageMetrics()


def test_agent_handoff() -> None:
    first = llm.AgentHandoff(new_agent_id="tutor")
    second = llm.AgentHandoff(old_agent_id="tutor", new_agent_id="quiz")

    assert conversation.map_agent_handoff(first, turn_id=None).old_agent_id is None
    mapped = conversation.map_agent_handoff(second, turn_id="turn-3")
    assert (mapped.old_agent_id, mapped.new_agent_id) == ("tutor", "quiz")
    assert (mapped.item_id, mapped.turn_id) == (second.id, "turn-3")


@pytest.mark.asyncio
async def test_speech_created() -> None:
    handle = SpeechHandle.create(allow_interruptions=False, input_details=InputDetails("text"))
    ev = SpeechCreatedEvent(speech_handle=handle, user_initiated=True, source="generate_reply")

    mapped = conversation.map_speech_created(ev, turn_id="turn-1")

    assert mapped.speech_id == handle.id
    assert mapped.user_initiated
    assert mapped.source == "generate_reply"
    assert mapped.allow_interruptions is False
    assert mapped.input_modality == "text"


# -- turn taking


def test_user_and_agent_states() -> None:
    user = UserStateChangedEvent(old_state="listening", new_state="speaking")
    agent = AgentStateChangedEvent(old_state="thinking", new_state="speaking")

    mapped_user = turn_taking.map_user_state_changed(user, turn_id="turn-1")
    mapped_agent = turn_taking.map_agent_state_changed(agent, turn_id="turn-1")

    assert (mapped_user.old_state, mapped_user.new_state) == ("listening", "speaking")
    assert (mapped_agent.old_state, mapped_agent.new_state) == ("thinking", "speaking")


def test_false_interruption_reads_no_deprecated_field(caplog: pytest.LogCaptureFixture) -> None:
    ev = AgentFalseInterruptionEvent(resumed=True)

    mapped = turn_taking.map_agent_false_interruption(ev, turn_id="turn-5")

    assert mapped.resumed
    assert "deprecated" not in caplog.text


def test_overlapping_speech_leaves_the_audio_behind() -> None:
    import numpy as np

    ev = OverlappingSpeechEvent(
        detected_at=T0,
        overlap_started_at=T0 - 0.4,
        is_interruption=True,
        probability=0.83,
        total_duration=0.12,
        prediction_duration=0.03,
        detection_delay=0.4,
        num_requests=2,
        speech_input=np.zeros(160, dtype=np.int16),
    )

    mapped = turn_taking.map_overlapping_speech(ev, turn_id="turn-2")

    assert mapped.is_interruption
    assert not mapped.agent_ended
    assert mapped.detected_at == AT_T0
    assert mapped.overlap_started_at == utc(T0 - 0.4)
    assert (mapped.probability, mapped.num_requests) == (0.83, 2)
    assert (mapped.total_duration, mapped.prediction_duration) == (0.12, 0.03)
    assert mapped.detection_delay == 0.4


# -- tools


def test_tools_executed_pairs_calls_with_outputs() -> None:
    call = llm.FunctionCall(
        call_id="call-1",
        name="provide_example",
        arguments='{"topic": "verbs"}',
        created_at=T0,
        group_id="g1",
    )
    output = llm.FunctionCallOutput(
        call_id="call-1",
        name="provide_example",
        output="Run, jump, think.",
        is_error=False,
        created_at=T0 + 0.25,
    )
    failed_call = llm.FunctionCall(call_id="call-2", name="check_understanding", arguments="{")
    failed = llm.FunctionCallOutput(
        call_id="call-2", output="invalid arguments", is_error=True, reply_required=False
    )
    ev = FunctionToolsExecutedEvent(
        function_calls=[call, failed_call], function_call_outputs=[output, failed]
    )

    mapped = tools.map_function_tools_executed(ev, turn_id="turn-2")

    first, second = mapped.calls
    assert (first.call_id, first.name, first.arguments) == (
        "call-1",
        "provide_example",
        '{"topic": "verbs"}',
    )
    assert (first.output, first.is_error) == ("Run, jump, think.", False)
    assert first.reply_required
    assert first.started_at == AT_T0
    assert first.duration == pytest.approx(0.25)
    assert first.group_id == "g1"
    assert (second.is_error, second.reply_required, second.arguments) == (True, False, "{")
    assert not mapped.agent_handoff
    assert mapped.turn_id == "turn-2"


def test_every_tool_lifecycle_step() -> None:
    call = llm.FunctionCall(call_id="call-1", name="provide_example", arguments="{}")
    steps = [
        ToolCallStarted(function_call=call),
        ToolCallUpdated(id="call-1", call_id="call-1", message="looking it up", silent=True),
        ToolCallEnded(id="call-1_final", call_id="call-1", status="error", message="boom"),
        ToolReplyUpdated(update_ids=["call-1_update_1"], status="completed", speech_id="sp-1"),
    ]

    mapped = [
        tools.map_tool_execution_updated(ToolExecutionUpdatedEvent(update=step), turn_id="t")
        for step in steps
    ]

    assert [m.update for m in mapped] == [
        ToolCallStartedUpdate(call_id="call-1", name="provide_example", arguments="{}"),
        ToolCallProgressUpdate(
            update_id="call-1", call_id="call-1", message="looking it up", silent=True
        ),
        ToolCallEndedUpdate(
            entry_id="call-1_final", call_id="call-1", status="error", message="boom"
        ),
        ToolReplyStatusUpdate(
            update_ids=("call-1_update_1",), status="completed", speech_id="sp-1"
        ),
    ]
    speech_ids = [tools.tool_update_speech_id(ToolExecutionUpdatedEvent(update=s)) for s in steps]
    assert speech_ids == [None, None, None, "sp-1"]


# -- scrubbing


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("Incorrect API key provided: sk-proj-a1b2c3d4e5f6", "sk-proj-a1b2c3d4e5f6"),
        ("connect to wss://bob:hunter2@lk.example/rtc failed", "hunter2"),
        ("GET /v1/listen?token=abcd1234&model=nova", "abcd1234"),
        ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
        ('{"api_key": "k-998877", "error": "quota"}', "k-998877"),
        ("jwt eyJhbGciOiJI.eyJzdWIiOiJ4In0.c2lnbmF0dXJl rejected", "eyJzdWIiOiJ4In0"),
        ("the configured secret s3cr3t-v4lue leaked", "s3cr3t-v4lue"),
    ],
)
def test_scrub_removes_credentials(text: str, leaked: str) -> None:
    scrubbed = scrub(text, secrets=["s3cr3t-v4lue"])

    assert leaked not in scrubbed
    assert "***" in scrubbed


def test_scrub_keeps_plain_messages_and_cuts_long_ones() -> None:
    assert scrub("connection reset by peer") == "connection reset by peer"
    assert len(scrub("x" * 5000)) == 300
