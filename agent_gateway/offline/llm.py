"""Offline LLM: a deterministic tutor that streams template replies and calls tools.

It implements `livekit.agents.llm.LLM` like the cloud plugins do: `chat()` returns an
`LLMStream` of `ChatChunk`s (the text word by word, or one chunk of `FunctionToolCall`s
with JSON arguments), then a usage chunk with estimated token counts (~4 characters a
token). `first_token_delay` simulates a model's time to first token. The same chat
context always gives the same reply (see `tutor_script`); only ids are fresh, as a cloud
provider's are, so two sessions never share a request or tool call id.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any, Never

from livekit.agents import APIConnectOptions, llm, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from turnlog.agent_gateway.offline.tutor_script import Reply, ToolOutcome, reply_to

CHARS_PER_TOKEN = 4


class OfflineLLM(llm.LLM[Never]):  # no events beyond the base ones
    """A `livekit.agents.llm.LLM` that answers as a tutor; no key, no network."""

    def __init__(self, *, first_token_delay: float = 0.0, token_delay: float = 0.0) -> None:
        super().__init__()
        if first_token_delay < 0 or token_delay < 0:
            raise ValueError("delays must not be negative")
        self._first_token_delay = first_token_delay
        self._token_delay = token_delay

    @property
    def model(self) -> str:
        return "tutor-script-v1"

    @property
    def provider(self) -> str:
        return "turnlog-offline"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> OfflineLLMStream:
        return OfflineLLMStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            tool_choice=tool_choice if tool_choice else "auto",
        )


class OfflineLLMStream(llm.LLMStream):
    """One reply of the offline tutor."""

    def __init__(
        self,
        offline_llm: OfflineLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        tool_choice: llm.ToolChoice,
    ) -> None:
        super().__init__(offline_llm, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._offline = offline_llm
        self._tool_choice = tool_choice

    async def _run(self) -> None:
        callable_tools = _callable_tools(self._tools, self._tool_choice)
        reply = plan_reply(self._chat_ctx, tools=callable_tools)
        request_id = utils.shortuuid("offline_")
        if self._offline._first_token_delay:
            await asyncio.sleep(self._offline._first_token_delay)
        if reply.tool_calls:
            self._send(request_id, tool_calls=_function_calls(reply))
        for piece in re.findall(r"\S+\s*", reply.text):
            self._send(request_id, content=piece)
            if self._offline._token_delay:
                await asyncio.sleep(self._offline._token_delay)
        self._event_ch.send_nowait(
            llm.ChatChunk(id=request_id, usage=estimate_usage(self._chat_ctx, reply, self._tools))
        )

    def _send(
        self,
        request_id: str,
        *,
        content: str | None = None,
        tool_calls: list[llm.FunctionToolCall] | None = None,
    ) -> None:
        delta = llm.ChoiceDelta(role="assistant", content=content, tool_calls=tool_calls or [])
        self._event_ch.send_nowait(llm.ChatChunk(id=request_id, delta=delta))


def plan_reply(chat_ctx: llm.ChatContext, *, tools: set[str]) -> Reply:
    """The tutor's reply to a chat context: what the user said, and the tool outputs that
    came back after their last message."""
    user_texts: list[str] = []
    outcomes: list[ToolOutcome] = []
    last_reply = ""
    for item in chat_ctx.items:
        if item.type == "message" and item.role == "user":
            user_texts.append(item.text_content or "")
            outcomes = []
        elif item.type == "message" and item.role == "assistant":
            last_reply = item.text_content or last_reply
        elif item.type == "function_call_output":
            outcomes.append(ToolOutcome(name=item.name, output=item.output, is_error=item.is_error))
    return reply_to(
        user_texts=user_texts, tool_outcomes=outcomes, tools=tools, last_reply=last_reply
    )


def estimate_usage(
    chat_ctx: llm.ChatContext, reply: Reply, tools: list[llm.Tool]
) -> llm.CompletionUsage:
    """Token counts estimated from characters: the context and tool names in, the reply out."""
    prompt_chars = sum(len(_item_text(item)) for item in chat_ctx.items)
    prompt_chars += sum(len(name) for name in llm.ToolContext(tools).function_tools)
    completion_chars = len(reply.text) + sum(
        len(call.name) + len(json.dumps(call.arguments)) for call in reply.tool_calls
    )
    prompt = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    completion = math.ceil(completion_chars / CHARS_PER_TOKEN)
    return llm.CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _callable_tools(tools: list[llm.Tool], tool_choice: llm.ToolChoice) -> set[str]:
    names = set(llm.ToolContext(tools).function_tools)
    if tool_choice == "none":
        return set()
    if isinstance(tool_choice, dict):
        return names & {tool_choice["function"]["name"]}
    return names


def _function_calls(reply: Reply) -> list[llm.FunctionToolCall]:
    return [
        llm.FunctionToolCall(
            name=call.name,
            arguments=json.dumps(call.arguments, sort_keys=True),
            call_id=utils.shortuuid("call_"),
        )
        for call in reply.tool_calls
    ]


def _item_text(item: llm.ChatItem) -> str:
    if item.type == "message":
        return item.text_content or ""
    if item.type == "function_call":
        return item.name + item.arguments
    if item.type == "function_call_output":
        return item.output
    return ""
