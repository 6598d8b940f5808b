"""The offline LLM: deterministic tutor replies, real tool calls, usage and time to first
token, driven directly and through a text-mode AgentSession."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from livekit.agents import AgentSession, llm
from livekit.agents.metrics import LLMMetrics

from examples.tutor.agent import TutorAgent, example_for
from turnlog.agent_gateway.offline.llm import OfflineLLM

pytestmark = pytest.mark.unit


@pytest_asyncio.fixture
async def offline_llm() -> AsyncIterator[OfflineLLM]:
    async with OfflineLLM() as model:
        yield model


def tutor_tools() -> list[llm.Tool]:
    return list(TutorAgent().tools)


def context(*user_messages: str) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="system", content="You are a patient tutor.")
    for text in user_messages:
        ctx.add_message(role="user", content=text)
    return ctx


async def chunks_of(stream: llm.LLMStream) -> list[llm.ChatChunk]:
    async with stream:
        return [chunk async for chunk in stream]


@pytest.mark.asyncio
async def test_the_same_context_gives_the_same_reply(offline_llm: OfflineLLM) -> None:
    ctx = context("What is the capital of France?")

    first = await offline_llm.chat(chat_ctx=ctx).collect()
    second = await OfflineLLM().chat(chat_ctx=ctx.copy()).collect()

    assert first.text == "The capital of France is Paris. Would you like an example?"
    assert second.text == first.text
    assert first.tool_calls == []


@pytest.mark.asyncio
async def test_text_streams_word_by_word_then_usage(offline_llm: OfflineLLM) -> None:
    chunks = await chunks_of(offline_llm.chat(chat_ctx=context("what is two plus two")))

    content = [c.delta.content for c in chunks if c.delta and c.delta.content]
    assert "".join(content) == "Two plus two is four."
    assert len(content) == 5
    assert len({c.id for c in chunks}) == 1
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens == 6  # 21 characters, ~4 a token
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.asyncio
async def test_an_example_request_calls_the_tool(offline_llm: OfflineLLM) -> None:
    ctx = context("Can you give me an example of photosynthesis?")

    response = await offline_llm.chat(chat_ctx=ctx, tools=tutor_tools()).collect()

    assert response.text == ""
    [call] = response.tool_calls
    assert call.name == "provide_example"
    assert json.loads(call.arguments) == {"topic": "photosynthesis"}
    assert call.call_id.startswith("call_")


@pytest.mark.asyncio
async def test_a_check_request_calls_the_tool_with_the_answer(offline_llm: OfflineLLM) -> None:
    ctx = context("Check my understanding of fractions: the bottom number counts equal parts")

    response = await offline_llm.chat(chat_ctx=ctx, tools=tutor_tools()).collect()

    [call] = response.tool_calls
    assert call.name == "check_understanding"
    assert json.loads(call.arguments) == {
        "topic": "fractions",
        "answer": "the bottom number counts equal parts",
    }


@pytest.mark.asyncio
async def test_no_tool_call_when_the_tool_is_not_offered_or_not_allowed(
    offline_llm: OfflineLLM,
) -> None:
    ctx = context("Can you give me an example of gravity?")

    without_tools = await offline_llm.chat(chat_ctx=ctx).collect()
    not_allowed = await offline_llm.chat(
        chat_ctx=ctx, tools=tutor_tools(), tool_choice="none"
    ).collect()

    assert without_tools.tool_calls == []
    assert not_allowed.tool_calls == []
    assert without_tools.text.startswith("Gravity is the pull")
    assert not_allowed.text == without_tools.text


@pytest.mark.asyncio
async def test_after_the_tool_output_the_reply_uses_it(offline_llm: OfflineLLM) -> None:
    ctx = context("Give me an example of gravity")
    output = example_for("gravity")
    ctx.insert(
        [
            llm.FunctionCall(call_id="call_1", name="provide_example", arguments='{"topic":"g"}'),
            llm.FunctionCallOutput(
                call_id="call_1", name="provide_example", output=output, is_error=False
            ),
        ]
    )

    response = await offline_llm.chat(chat_ctx=ctx, tools=tutor_tools()).collect()

    assert response.tool_calls == []
    assert response.text == f"Here is an example. {output} What would you like to try next?"


@pytest.mark.asyncio
async def test_first_token_delay_and_metrics() -> None:
    delayed = OfflineLLM(first_token_delay=0.2)
    metrics: list[LLMMetrics] = []
    delayed.on("metrics_collected", metrics.append)

    started = time.perf_counter()
    response = await delayed.chat(chat_ctx=context("hello")).collect()

    assert time.perf_counter() - started >= 0.2
    assert response.text.startswith("Hello! I'm your tutor.")
    [metric] = metrics
    assert metric.ttft >= 0.2
    assert metric.completion_tokens > 0
    assert metric.prompt_tokens > 0
    assert metric.metadata is not None
    assert metric.metadata.model_provider == "turnlog-offline"
    with pytest.raises(ValueError, match="negative"):
        OfflineLLM(first_token_delay=-1)


@pytest.mark.asyncio
async def test_tutor_session_greets_then_calls_tools(offline_llm: OfflineLLM) -> None:
    async with AgentSession[None](llm=offline_llm) as session:
        greeting = await session.start(TutorAgent(), capture_run=True)
        greeting.expect.skip_next_event_if(type="agent_handoff")
        greeting.expect.next_event().is_message(role="assistant")

        result = await session.run(user_input="Can you give me an example of photosynthesis?")

        result.expect.next_event().is_function_call(
            name="provide_example", arguments={"topic": "photosynthesis"}
        )
        result.expect.next_event().is_function_call_output(
            output=example_for("photosynthesis"), is_error=False
        )
        reply = result.expect.next_event().is_message(role="assistant").event().item
        assert reply.text_content is not None
        assert example_for("photosynthesis") in reply.text_content
        result.expect.no_more_events()


@pytest.mark.asyncio
async def test_tutor_session_checks_understanding(offline_llm: OfflineLLM) -> None:
    async with AgentSession[None](llm=offline_llm) as session:
        await session.start(TutorAgent())
        await session.run(user_input="What is photosynthesis?")

        result = await session.run(user_input="Am I right: plants use sunlight to make sugar")

        result.expect.next_event().is_function_call(
            name="check_understanding",
            arguments={"topic": "photosynthesis", "answer": "plants use sunlight to make sugar"},
        )
        result.expect.next_event().is_function_call_output(is_error=False)
        reply = result.expect.next_event().is_message(role="assistant").event().item
        assert (reply.text_content or "").startswith("You're partly right about photosynthesis.")
        result.expect.no_more_events()
