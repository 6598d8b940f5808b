"""The hooks: AgentSession, room and job lifecycle events turned into catalog events.

Pure mapping functions per domain (`conversation`, `turn_taking`, `tools`, `telemetry`,
`session`, `room`), the turn rules (`turns`), and the `SessionRecorder` that subscribes,
sequences and hands each event to an `EventSink`.
"""

from __future__ import annotations

from turnlog.agent_gateway.hooks.recorder import (
    NOT_RECORDED_HOOKS,
    RecorderIdentity,
    SessionRecorder,
)
from turnlog.agent_gateway.hooks.session import JobInfo, map_session_started
from turnlog.agent_gateway.hooks.sink import EventSink, MemorySink
from turnlog.agent_gateway.hooks.turns import TurnTracker

__all__ = [
    "NOT_RECORDED_HOOKS",
    "EventSink",
    "JobInfo",
    "MemorySink",
    "RecorderIdentity",
    "SessionRecorder",
    "TurnTracker",
    "map_session_started",
]
