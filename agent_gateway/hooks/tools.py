"""Function tools: AgentSession `function_tools_executed` and `tool_execution_updated`.
Pure functions from a livekit-agents event to a catalog payload."""

from __future__ import annotations

from livekit.agents import llm
from livekit.agents.voice.events import (
    FunctionToolsExecutedEvent,
    ToolCallEnded,
    ToolCallStarted,
    ToolCallUpdated,
    ToolExecutionUpdatedEvent,
    ToolReplyUpdated,
)

from turnlog.agent_gateway.hooks.convert import utc
from turnlog.schemas import (
    ToolCall,
    ToolCallEndedUpdate,
    ToolCallProgressUpdate,
    ToolCallStartedUpdate,
    ToolExecutionUpdated,
    ToolReplyStatusUpdate,
    ToolsExecuted,
)
from turnlog.schemas.events.tools import ToolExecutionUpdate


def map_function_tools_executed(
    ev: FunctionToolsExecutedEvent, *, turn_id: str | None
) -> ToolsExecuted:
    """`function_tools_executed` -> `tools.executed`: each call with the output at the
    same position (LiveKit's pairing)."""
    return ToolsExecuted(
        turn_id=turn_id,
        calls=tuple(map_tool_call(call, output) for call, output in ev.zipped()),
        agent_handoff=ev.has_agent_handoff,
    )


def map_tool_call(call: llm.FunctionCall, output: llm.FunctionCallOutput) -> ToolCall:
    """One `FunctionCall` and its `FunctionCallOutput` -> `ToolCall`."""
    return ToolCall(
        call_id=call.call_id,
        name=call.name,
        arguments=call.arguments,
        output=output.output,
        is_error=output.is_error,
        reply_required=output.reply_required,
        started_at=utc(call.created_at),
        duration=max(output.created_at - call.created_at, 0.0),
        group_id=call.group_id,
    )


def map_tool_execution_updated(
    ev: ToolExecutionUpdatedEvent, *, turn_id: str | None
) -> ToolExecutionUpdated:
    """`tool_execution_updated` -> `tools.execution_updated`."""
    return ToolExecutionUpdated(turn_id=turn_id, update=map_tool_update(ev.update))


def map_tool_update(
    update: ToolCallStarted | ToolCallUpdated | ToolCallEnded | ToolReplyUpdated,
) -> ToolExecutionUpdate:
    """One step of LiveKit's tool lifecycle -> the matching `kind` of the catalog."""
    if isinstance(update, ToolCallStarted):
        call = update.function_call
        return ToolCallStartedUpdate(
            call_id=call.call_id, name=call.name, arguments=call.arguments
        )
    if isinstance(update, ToolCallUpdated):
        return ToolCallProgressUpdate(
            update_id=update.id,
            call_id=update.call_id,
            message=update.message,
            silent=update.silent,
        )
    if isinstance(update, ToolCallEnded):
        return ToolCallEndedUpdate(
            entry_id=update.id,
            call_id=update.call_id,
            status=update.status,
            message=update.message,
        )
    return ToolReplyStatusUpdate(
        update_ids=tuple(update.update_ids), status=update.status, speech_id=update.speech_id
    )


def tool_update_speech_id(ev: ToolExecutionUpdatedEvent) -> str | None:
    """The speech an update names explicitly (a deferred reply), if any."""
    return ev.update.speech_id if isinstance(ev.update, ToolReplyUpdated) else None
