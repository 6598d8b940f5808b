"""The recorder on a real, running AgentSession (text input, no room, a scripted LLM):
LiveKit's own event order, turn ids from the real speech tasks, metrics observed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, function_tool, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from prometheus_client import CollectorRegistry

from turnlog.agent_gateway.hooks import MemorySink, RecorderIdentity, SessionRecorder
from turnlog.agent_gateway.hooks.speech_context import current_speech_id
from turnlog.agent_gateway.metrics import GatewayMetrics
from turnlog.schemas import SessionStarted

pytestmark = pytest.mark.unit


class ScriptedStream(llm.LLMStream):
    async def _run(self) -> None:
        last = self._chat_ctx.items[-1]
        request = f"req-{time.monotonic_ns()}"
        if isinstance(last, llm.ChatMessage) and "example" in (last.text_content or ""):
            call = llm.FunctionToolCall(
                name="provide_example", arguments='{"topic": "verbs"}', call_id="call-1"
            )
            delta = llm.ChoiceDelta(role="assistant", tool_calls=[call])
            self._event_ch.send_nowait(llm.ChatChunk(id=request, delta=delta))
        else:
            for word in ("A verb ", "is an ", "action."):
                delta = llm.ChoiceDelta(role="assistant", content=word)
                self._event_ch.send_nowait(llm.ChatChunk(id=request, delta=delta))
        usage = llm.CompletionUsage(completion_tokens=3, prompt_tokens=9, total_tokens=12)
        self._event_ch.send_nowait(llm.ChatChunk(id=request, usage=usage))


class ScriptedLLM(llm.LLM):
    """Answers in three words, or calls `provide_example` when asked for an example."""

    @property
    def model(self) -> str:
        return "scripted"

    @property
    def provider(self) -> str:
        return "test"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        return ScriptedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class Tutor(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a tutor.")

    @function_tool
    async def provide_example(self, topic: str) -> str:
        """Give an example of the topic."""
        return f"An example of {topic}: run."


def t(name: str) -> str:
    return f"turnlog.{name}.v1"


TEXT_TURN = [
    t("speech.created"),
    t("conversation.item_added"),  # the user's text
    t("agent.state_changed"),  # thinking
    t("metrics.collected"),  # llm
    t("usage.updated"),
    t("agent.state_changed"),  # speaking
    t("conversation.item_added"),  # the answer
    t("agent.state_changed"),  # listening
]
TOOL_TURN = [
    t("speech.created"),
    t("conversation.item_added"),
    t("agent.state_changed"),
    t("metrics.collected"),
    t("usage.updated"),
    t("tools.execution_updated"),  # call started
    t("tools.execution_updated"),  # call ended
    t("tools.executed"),
    t("metrics.collected"),  # the LLM again, with the tool output
    t("usage.updated"),
    t("agent.state_changed"),
    t("conversation.item_added"),
    t("agent.state_changed"),
]


async def run_session(metrics: GatewayMetrics | None = None) -> MemorySink:
    sink = MemorySink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM())
    recorder = SessionRecorder(
        sink=sink,
        identity=RecorderIdentity(agent_name="tutor", worker_id="w", room_name="r"),
        metrics=metrics,
    )
    recorder.start(session, started=SessionStarted(job_id="j", agent_name="tutor", worker_id="w"))
    await session.start(Tutor())
    await session.run(user_input="what is a verb")
    await session.run(user_input="give me an example")
    await session.say("See you next time.")
    await session.aclose()
    return sink


@pytest.mark.asyncio
async def test_text_turns_tools_and_a_goodbye() -> None:
    sink = await run_session()

    assert sink.types == [
        t("session.started"),
        t("agent.handoff"),  # the first agent
        t("agent.state_changed"),  # initializing -> listening
        *TEXT_TURN,
        *TOOL_TURN,
        t("speech.created"),
        t("agent.state_changed"),
        t("conversation.item_added"),
        t("agent.state_changed"),
        t("session.closed"),
    ]
    assert [e.sequence for e in sink.events] == list(range(1, len(sink.events) + 1))
    turns = [getattr(e.data, "turn_id", None) for e in sink.events if e.type != t("usage.updated")]
    usage_free = [
        *([None] * 3),
        *(["turn-1"] * (len(TEXT_TURN) - 1)),
        *(["turn-2"] * (len(TOOL_TURN) - 2)),
        *(["turn-3"] * 4),
        None,
    ]
    assert turns == usage_free


@pytest.mark.asyncio
async def test_messages_carry_text_role_agent_and_latency() -> None:
    sink = await run_session()

    messages = [e.data for e in sink.events if e.type == t("conversation.item_added")]

    assert [(m.role, m.text) for m in messages] == [
        ("user", "what is a verb"),
        ("assistant", "A verb is an action."),
        ("user", "give me an example"),
        ("assistant", "A verb is an action."),
        ("assistant", "See you next time."),
    ]
    assert {m.agent_id for m in messages} == {"tutor"}
    assert messages[1].metrics.llm_node_ttft is not None
    assert messages[1].metrics.llm is not None
    assert messages[1].metrics.llm.model == "scripted"
    [executed] = [e.data for e in sink.events if e.type == t("tools.executed")]
    assert [(c.name, c.output) for c in executed.calls] == [
        ("provide_example", "An example of verbs: run.")
    ]


@pytest.mark.asyncio
async def test_livekit_still_sets_the_speech_context_around_a_reply() -> None:
    """Pins the one LiveKit-internal read of the hooks (`hooks.speech_context`)."""
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM())
    seen: list[tuple[str, str | None]] = []
    session.on("speech_created", lambda ev: seen.append(("created", ev.speech_handle.id)))
    session.on(
        "conversation_item_added",
        lambda ev: seen.append((ev.item.type, current_speech_id())),
    )
    await session.start(Tutor())
    await session.run(user_input="what is a verb")
    await session.aclose()

    [speech] = [speech_id for kind, speech_id in seen if kind == "created"]
    messages = [speech_id for kind, speech_id in seen if kind == "message"]
    assert speech is not None
    assert messages == [speech, speech]


@pytest.mark.asyncio
async def test_the_latencies_reach_prometheus() -> None:
    registry = CollectorRegistry()

    await run_session(GatewayMetrics(registry))

    labels = {"provider": "test", "model": "scripted"}
    assert registry.get_sample_value("turnlog_agent_llm_ttft_seconds_count", labels) == 2.0
    assert registry.get_sample_value(
        "turnlog_agent_request_seconds_count", {"component": "llm", **labels}
    ) == 3.0
    assert registry.get_sample_value("turnlog_gateway_sessions_started_total") == 1.0
    assert registry.get_sample_value(
        "turnlog_gateway_sessions_closed_total", {"reason": "user_initiated"}
    ) == 1.0
    assert registry.get_sample_value(
        "turnlog_gateway_hook_seconds_count", {"hook": "function_tools_executed"}
    ) == 1.0
