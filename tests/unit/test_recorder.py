"""The recorder over a scripted series of real AgentSession and room events: contiguous
sequence, turn ids, session.closed exactly once, failures that leave no gap."""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from livekit.agents import AgentSession, llm
from livekit.agents import metrics as lk
from livekit.agents.inference.interruption import OverlappingSpeechEvent
from livekit.agents.metrics.usage import AgentSessionUsage
from livekit.agents.voice.agent_activity import _SpeechHandleContextVar
from livekit.agents.voice.events import (
    AgentStateChangedEvent,
    CloseEvent,
    CloseReason,
    ConversationItemAddedEvent,
    EventTypes,
    FunctionToolsExecutedEvent,
    MetricsCollectedEvent,
    SessionUsageUpdatedEvent,
    SpeechCreatedEvent,
    ToolCallEnded,
    ToolCallStarted,
    ToolExecutionUpdatedEvent,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
)
from livekit.agents.voice.speech_handle import SpeechHandle
from prometheus_client import CollectorRegistry

from turnlog.agent_gateway.hooks import (
    NOT_RECORDED_HOOKS,
    MemorySink,
    RecorderIdentity,
    SessionRecorder,
)
from turnlog.agent_gateway.metrics import GatewayMetrics
from turnlog.schemas import CloudEvent, SessionStarted, decode, encode

pytestmark = pytest.mark.unit

IDENTITY = RecorderIdentity(agent_name="turnlog-tutor", worker_id="AW_1", room_name="lesson-1")
STARTED = SessionStarted(job_id="AJ_1", agent_name="turnlog-tutor", worker_id="AW_1")


def t(name: str) -> str:
    return f"turnlog.{name}.v1"


@contextmanager
def inside(speech: SpeechHandle) -> Iterator[None]:
    """Emit as LiveKit does from a speech's task: with the speech in the context."""
    token = _SpeechHandleContextVar.set(speech)
    try:
        yield
    finally:
        _SpeechHandleContextVar.reset(token)


def turns_of(sink: MemorySink) -> list[tuple[str, str | None]]:
    return [(e.type, getattr(e.data, "turn_id", None)) for e in sink.events]


def new_recorder(
    sink: Any = None, metrics: GatewayMetrics | None = None
) -> tuple[SessionRecorder, Any]:
    sink = sink if sink is not None else MemorySink()
    return SessionRecorder(sink=sink, identity=IDENTITY, metrics=metrics), sink


def llm_metrics(speech_id: str) -> lk.LLMMetrics:
    return lk.LLMMetrics(
        label="llm", request_id="r", timestamp=1.0, duration=0.5, ttft=0.2, cancelled=False,
        completion_tokens=1, prompt_tokens=1, prompt_cached_tokens=0, total_tokens=2,
        tokens_per_second=2.0, speech_id=speech_id,
    )


@pytest.mark.asyncio
async def test_a_voice_session_with_a_barge_in() -> None:
    session: AgentSession[Any] = AgentSession()
    recorder, sink = new_recorder()
    recorder.start(session, started=STARTED)
    speech = SpeechHandle.create()
    call = llm.FunctionCall(call_id="c1", name="provide_example", arguments="{}")
    output = llm.FunctionCallOutput(call_id="c1", output="ex", is_error=False)

    session.emit("user_state_changed", UserStateChangedEvent(old_state="listening",
                                                             new_state="speaking"))
    session.emit("user_input_transcribed", UserInputTranscribedEvent(transcript="wh",
                                                                     is_final=False))
    session.emit("user_input_transcribed", UserInputTranscribedEvent(transcript="what is x",
                                                                     is_final=True))
    session.emit("user_state_changed", UserStateChangedEvent(old_state="speaking",
                                                             new_state="listening"))
    session.emit("speech_created", SpeechCreatedEvent(speech_handle=speech, user_initiated=True,
                                                      source="generate_reply"))
    eou = lk.EOUMetrics(timestamp=1.0, end_of_utterance_delay=0.5, transcription_delay=0.2,
                        on_user_turn_completed_delay=0.0, speech_id=speech.id)
    session.emit("metrics_collected", MetricsCollectedEvent(metrics=eou))
    with inside(speech):
        user_message = llm.ChatMessage(role="user", content=["what is x"])
        session.emit("conversation_item_added", ConversationItemAddedEvent(item=user_message))
        session.emit("agent_state_changed", AgentStateChangedEvent(old_state="listening",
                                                                   new_state="thinking"))
        session.emit("metrics_collected", MetricsCollectedEvent(metrics=llm_metrics(speech.id)))
        session.emit("tool_execution_updated",
                     ToolExecutionUpdatedEvent(update=ToolCallStarted(function_call=call)))
        session.emit("tool_execution_updated", ToolExecutionUpdatedEvent(
            update=ToolCallEnded(id="c1", call_id="c1", status="done")))
        session.emit("function_tools_executed", FunctionToolsExecutedEvent(
            function_calls=[call], function_call_outputs=[output]))
        session.emit("agent_state_changed", AgentStateChangedEvent(old_state="thinking",
                                                                   new_state="speaking"))
    # the user talks over the answer
    session.emit("user_state_changed", UserStateChangedEvent(old_state="listening",
                                                             new_state="speaking"))
    session.emit("overlapping_speech", OverlappingSpeechEvent(is_interruption=True))
    vad = lk.VADMetrics(label="vad", timestamp=1.0, idle_time=0.0,
                        inference_duration_total=0.01, inference_count=3)
    with inside(speech):  # VAD metrics never belong to a speech, even inside one
        session.emit("metrics_collected", MetricsCollectedEvent(metrics=vad))
        answer = llm.ChatMessage(role="assistant", content=["x is"], interrupted=True)
        session.emit("conversation_item_added", ConversationItemAddedEvent(item=answer))
        session.emit("agent_state_changed", AgentStateChangedEvent(old_state="speaking",
                                                                   new_state="listening"))
    session.emit("user_input_transcribed", UserInputTranscribedEvent(transcript="wait",
                                                                     is_final=True))
    session.emit("session_usage_updated",
                 SessionUsageUpdatedEvent(usage=AgentSessionUsage(model_usage=[])))
    session.emit("close", CloseEvent(reason=CloseReason.USER_INITIATED))

    assert turns_of(sink) == [
        (t("session.started"), None),
        (t("user.state_changed"), "turn-1"),
        (t("user.transcribed"), "turn-1"),
        (t("user.transcribed"), "turn-1"),
        (t("user.state_changed"), "turn-1"),
        (t("speech.created"), "turn-1"),
        (t("metrics.collected"), "turn-1"),
        (t("conversation.item_added"), "turn-1"),
        (t("agent.state_changed"), "turn-1"),
        (t("metrics.collected"), "turn-1"),
        (t("tools.execution_updated"), "turn-1"),
        (t("tools.execution_updated"), "turn-1"),
        (t("tools.executed"), "turn-1"),
        (t("agent.state_changed"), "turn-1"),
        (t("user.state_changed"), "turn-2"),
        (t("user.overlapping_speech"), "turn-2"),
        (t("metrics.collected"), "turn-2"),
        (t("conversation.item_added"), "turn-1"),
        (t("agent.state_changed"), "turn-1"),
        (t("user.transcribed"), "turn-2"),
        (t("usage.updated"), None),
        (t("session.closed"), None),
    ]
    assert [e.sequence for e in sink.events] == list(range(1, len(sink.events) + 1))
    assert recorder.closed


@pytest.mark.asyncio
async def test_envelopes_carry_the_session_identity() -> None:
    session: AgentSession[Any] = AgentSession()
    recorder, sink = new_recorder()
    other, _ = new_recorder()
    recorder.start(session, started=STARTED)
    session.emit("user_state_changed", UserStateChangedEvent(old_state="listening",
                                                             new_state="speaking",
                                                             created_at=1_767_225_600.0))

    for event in sink.events:
        assert event.sessionid == event.partitionkey == recorder.session_id
        assert event.source == "/agents/turnlog-tutor/AW_1"
        assert event.subject == "lesson-1"
        assert decode(encode(event)) == event
    assert sink.events[1].time.timestamp() == 1_767_225_600.0
    assert recorder.session_id != other.session_id
    assert recorder.session_id[14] == "7"  # a UUIDv7


@pytest.mark.asyncio
async def test_every_agent_session_hook_is_subscribed() -> None:
    session: AgentSession[Any] = AgentSession()
    recorder, _ = new_recorder()
    recorder.start(session, started=STARTED)

    subscribed = {hook for hook in typing.get_args(EventTypes) if session._events.get(hook)}

    assert subscribed == set(typing.get_args(EventTypes)) - NOT_RECORDED_HOOKS
    recorder.close()
    assert not any(session._events.get(hook) for hook in subscribed)


@pytest.mark.asyncio
async def test_subscribing_to_metrics_logs_no_deprecation_notice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder, _ = new_recorder()

    recorder.start(AgentSession(), started=STARTED)
    logging.getLogger("livekit.agents").warning("metrics_collected is deprecated, later")

    notices = [r for r in caplog.records if "metrics_collected is deprecated" in r.message]
    assert [r.message for r in notices] == ["metrics_collected is deprecated, later"]


@pytest.mark.asyncio
async def test_close_event_then_job_shutdown_records_one_close() -> None:
    session: AgentSession[Any] = AgentSession()
    recorder, sink = new_recorder()
    recorder.start(session, started=STARTED)

    session.emit("close", CloseEvent(reason=CloseReason.PARTICIPANT_DISCONNECTED))
    assert recorder.close("job_shutdown") is False
    session.emit("agent_state_changed", AgentStateChangedEvent(old_state="listening",
                                                               new_state="idle"))

    assert sink.types == [t("session.started"), t("session.closed")]
    assert sink.events[-1].data.reason == "participant_disconnected"


@pytest.mark.asyncio
async def test_job_shutdown_closes_a_session_that_never_closed() -> None:
    session: AgentSession[Any] = AgentSession()
    recorder, sink = new_recorder()
    recorder.start(session, started=STARTED)

    assert recorder.close("job_shutdown") is True
    assert recorder.close("job_shutdown") is False
    session.emit("close", CloseEvent(reason=CloseReason.USER_INITIATED))

    assert sink.types == [t("session.started"), t("session.closed")]
    assert sink.events[-1].data.reason == "job_shutdown"
    assert [e.sequence for e in sink.events] == [1, 2]


def test_nothing_to_close_before_start() -> None:
    recorder, sink = new_recorder()

    assert recorder.close() is False
    assert sink.events == []


@pytest.mark.asyncio
async def test_starting_twice_is_refused() -> None:
    recorder, _ = new_recorder()
    recorder.start(AgentSession(), started=STARTED)

    with pytest.raises(RuntimeError, match="already being recorded"):
        recorder.start(AgentSession(), started=STARTED)


class FlakySink(MemorySink):
    """Raises once, on the n-th publish."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    def publish(self, event: CloudEvent[Any]) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("sink exploded")
        super().publish(event)


@pytest.mark.asyncio
async def test_a_failing_hook_is_logged_counted_and_leaves_no_gap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    session: AgentSession[Any] = AgentSession()
    recorder, sink = new_recorder(FlakySink(fail_at=2), GatewayMetrics(registry))
    recorder.start(session, started=STARTED)

    for new_state in ("speaking", "listening", "speaking"):
        old_state = "speaking" if new_state == "listening" else "listening"
        session.emit("user_state_changed", UserStateChangedEvent(old_state=old_state,
                                                                 new_state=new_state))

    assert [e.sequence for e in sink.events] == [1, 2, 3]
    assert "hook user_state_changed could not be recorded" in caplog.text
    failures = registry.get_sample_value(
        "turnlog_gateway_hook_failures_total", {"hook": "user_state_changed"}
    )
    assert failures == 1.0
    timed = registry.get_sample_value(
        "turnlog_gateway_hook_seconds_count", {"hook": "user_state_changed"}
    )
    assert timed == 3.0


@pytest.mark.asyncio
async def test_a_refused_close_is_logged_and_can_be_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder, sink = new_recorder(FlakySink(fail_at=2))
    recorder.start(AgentSession(), started=STARTED)

    assert recorder.close() is False  # the sink refused: the shutdown goes on
    assert recorder.close() is True

    assert "session.closed could not be recorded" in caplog.text
    assert [(e.sequence, e.type) for e in sink.events] == [
        (1, t("session.started")),
        (2, t("session.closed")),
    ]


def test_a_hook_without_a_handler_is_a_bug() -> None:
    recorder, _ = new_recorder()

    with pytest.raises(LookupError, match="user_turn_exceeded"):
        recorder.hooks.handler("user_turn_exceeded")
    assert {"debug_message"} == NOT_RECORDED_HOOKS
