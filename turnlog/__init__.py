"""Turnlog: every lifecycle hook of a LiveKit voice agent, recorded as a CloudEvent in Kafka.

Add it to the entrypoint of the agent you have, before `session.start`:

    import turnlog

    async def entrypoint(ctx: JobContext) -> None:
        session = AgentSession(stt=..., llm=..., tts=..., vad=...)
        await turnlog.record(session, ctx)
        await session.start(agent=MyAgent(), room=ctx.room)

Settings come from the environment (`TURNLOG_KAFKA_BOOTSTRAP`, `TURNLOG_SPOOL_DIR`, ...;
see `RecordSettings`), and each has a keyword of `record` that wins. Recording never blocks
the voice loop, and loses nothing while Kafka is down: events wait in a crash-safe spool.

This file is the whole public API; every other module of the package is internal. The
names load on first use, so the platform's own subpackages (`turnlog.schemas`, ...) import
without LiveKit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turnlog.agent_gateway.config import RecordSettings
    from turnlog.agent_gateway.errors import ConfigurationError, GatewayError
    from turnlog.agent_gateway.record import Recording, record

__all__ = ["ConfigurationError", "GatewayError", "RecordSettings", "Recording", "record"]
__version__ = "0.1.0"

_HOMES = {
    "record": "turnlog.agent_gateway.record",
    "Recording": "turnlog.agent_gateway.record",
    "RecordSettings": "turnlog.agent_gateway.config",
    "ConfigurationError": "turnlog.agent_gateway.errors",
    "GatewayError": "turnlog.agent_gateway.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'turnlog' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
