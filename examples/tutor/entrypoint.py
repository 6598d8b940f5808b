"""The tutor's job: its providers from the environment, its session recorded by Turnlog.

`TURNLOG_STT/LLM/TTS` choose the providers (`offline` by default; see
`turnlog.agent_gateway.providers`); a chosen provider without its key stops the worker in
`prewarm`, naming the variable. The recording is one line: `turnlog.record`.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import AgentSession, JobContext, JobProcess

import turnlog
from examples.tutor.agent import TutorAgent
from turnlog.agent_gateway.providers import (
    ProviderSettings,
    build_providers,
    load_provider_settings,
    load_vad,
)


def prewarm(proc: JobProcess) -> None:
    """Before a job arrives: check the provider settings (a missing key fails here, named)
    and load the VAD model once per process."""
    proc.userdata["provider_settings"] = load_provider_settings()
    proc.userdata["vad"] = load_vad()


async def entrypoint(ctx: JobContext) -> None:
    """One lesson: the session built from the configured providers, recorded, started."""
    settings: ProviderSettings = (
        ctx.proc.userdata.get("provider_settings") or load_provider_settings()
    )
    providers = build_providers(settings, vad=ctx.proc.userdata.get("vad"))
    ctx.add_shutdown_callback(providers.aclose)
    session: AgentSession[Any] = AgentSession(
        stt=providers.stt, llm=providers.llm, tts=providers.tts, vad=providers.vad,
        **session_options(settings),
    )  # fmt: skip
    await turnlog.record(session, ctx)
    await session.start(agent=TutorAgent(), room=ctx.room)


def session_options(settings: ProviderSettings) -> dict[str, Any]:
    """Turn detection: with the offline recognizer, end of turn comes from the VAD. LiveKit's
    default turn detector would call its cloud inference service in dev mode (not offline)
    and, measured here, waits 2.5 s where the VAD decides in about 0.5 s."""
    if settings.stt == "offline":
        return {"turn_handling": {"turn_detection": "vad"}}
    return {}
