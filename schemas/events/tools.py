"""Function tools: what the LLM called, with which arguments, and what came back."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, TypeAlias

from pydantic import Field

from turnlog.schemas.base import Record, TurnScoped, UtcDatetime
from turnlog.schemas.personal import OptionalPersonal, Personal


class ToolCall(Record):
    """One function call and its output (a LiveKit `FunctionCall` with the
    `FunctionCallOutput` of the same `call_id`)."""

    call_id: str
    """Id the LLM gave the call; the output carries the same id."""
    name: str
    """Name of the function tool."""
    arguments: Personal
    """Arguments exactly as the LLM produced them: a JSON object as a string (it may be
    invalid JSON when the model erred)."""
    output: Personal
    """The tool's output as given back to the LLM, or the error text."""
    is_error: bool
    """Whether the tool raised (or was interrupted) instead of returning."""
    reply_required: bool = True
    """Whether the LLM is asked to answer after this output."""
    started_at: UtcDatetime | None = None
    """When the call was created (UTC)."""
    duration: float | None = None
    """Seconds from the call's creation to its output, when both times are known."""
    group_id: str | None = None
    """Shared id of calls the LLM issued in parallel, when set."""


class ToolsExecuted(TurnScoped):
    """A batch of function tools finished (AgentSession `function_tools_executed`)."""

    TYPE: ClassVar[str] = "turnlog.tools.executed.v1"

    calls: tuple[ToolCall, ...]
    """The calls of the batch with their outputs, in the order LiveKit reported them."""
    agent_handoff: bool = False
    """Whether a tool of the batch handed off to another agent."""


class ToolCallStartedUpdate(Record):
    """A function tool call was dispatched (LiveKit `ToolCallStarted`)."""

    kind: Literal["call_started"] = "call_started"
    """Discriminator."""
    call_id: str
    """Id of the call."""
    name: str
    """Name of the function tool."""
    arguments: Personal
    """Arguments as a JSON string, as the LLM produced them."""


class ToolCallProgressUpdate(Record):
    """A running tool pushed a progress update with `ctx.update()`
    (LiveKit `ToolCallUpdated`)."""

    kind: Literal["call_updated"] = "call_updated"
    """Discriminator."""
    update_id: str
    """Entry id: the `call_id` inline, `{call_id}_update_N` when deferred."""
    call_id: str
    """Id of the call."""
    message: Personal
    """The progress message."""
    silent: bool = False
    """True when the update was kept to the model and the user heard nothing."""


class ToolCallEndedUpdate(Record):
    """A tool call's terminal entry (LiveKit `ToolCallEnded`)."""

    kind: Literal["call_ended"] = "call_ended"
    """Discriminator."""
    entry_id: str
    """Entry id: the `call_id` inline, `{call_id}_final` when deferred."""
    call_id: str
    """Id of the call."""
    status: Literal["done", "error", "cancelled"]
    """How the call ended."""
    message: OptionalPersonal = None
    """Result or error text; None when there is nothing to voice."""


class ToolReplyStatusUpdate(Record):
    """Lifecycle of the deferred reply voicing buffered tool updates
    (LiveKit `ToolReplyUpdated`)."""

    kind: Literal["reply_updated"] = "reply_updated"
    """Discriminator."""
    update_ids: tuple[str, ...]
    """`update_id`s of the progress updates this reply covers."""
    status: Literal["scheduled", "completed", "interrupted", "skipped"]
    """Where the reply is in its lifecycle."""
    speech_id: str
    """Id of the reply's speech (see `speech.created`)."""


ToolExecutionUpdate: TypeAlias = Annotated[
    ToolCallStartedUpdate | ToolCallProgressUpdate | ToolCallEndedUpdate | ToolReplyStatusUpdate,
    Field(discriminator="kind"),
]


class ToolExecutionUpdated(TurnScoped):
    """One step of a tool call's lifecycle: started, progress update, ended, or the
    deferred reply's status (AgentSession `tool_execution_updated`)."""

    TYPE: ClassVar[str] = "turnlog.tools.execution_updated.v1"

    update: ToolExecutionUpdate
    """The step, discriminated by `kind`."""
