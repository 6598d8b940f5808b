"""Building the session's STT, LLM, TTS and VAD from `ProviderSettings`.

`offline` (the default) needs no key and no network: pocketsphinx, a template tutor and
Festival (`turnlog.agent_gateway.offline`). Cloud providers go through their LiveKit
plugins (`cloud`); several for a stage through LiveKit's `FallbackAdapter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livekit.agents import llm, stt, tts, vad
from livekit.plugins import silero

from turnlog.agent_gateway.offline.llm import OfflineLLM
from turnlog.agent_gateway.offline.stt import OfflineSTT
from turnlog.agent_gateway.offline.tts import OfflineTTS
from turnlog.agent_gateway.providers import cloud
from turnlog.agent_gateway.providers.settings import ProviderSettings
from turnlog.schemas.base import ModelInfo


@dataclass(frozen=True)
class ProviderDescription:
    """Provider and model of each stage, as `session.started` records them."""

    stt: ModelInfo
    llm: ModelInfo
    tts: ModelInfo


@dataclass
class Providers:
    """The components an `AgentSession` is built from."""

    stt: stt.STT[Any]
    llm: llm.LLM[Any]
    tts: tts.TTS[Any]
    vad: vad.VAD

    def describe(self) -> ProviderDescription:
        """Provider and model of each component as the component itself names them (a
        `FallbackAdapter` names the one that serves first), as `session.started` does."""
        return ProviderDescription(
            stt=ModelInfo(provider=self.stt.provider, model=self.stt.model),
            llm=ModelInfo(provider=self.llm.provider, model=self.llm.model),
            tts=ModelInfo(provider=self.tts.provider, model=self.tts.model),
        )

    async def aclose(self) -> None:
        """Close what the session does not own (e.g. idle recognizer processes)."""
        await self.stt.aclose()
        await self.llm.aclose()
        await self.tts.aclose()


def load_vad() -> vad.VAD:
    """Silero VAD (its model ships in the wheel). Blocking, ~0.1 s: call it in the worker's
    prewarm and pass the result to `build_providers`."""
    return silero.VAD.load()


def build_providers(settings: ProviderSettings, *, vad: vad.VAD | None = None) -> Providers:
    """Construct the chosen providers; several for a stage become LiveKit's
    `FallbackAdapter` over them, in the order given. A chosen cloud provider without its
    key, a plugin that is not installed, or an offline engine that is missing raises
    `ProviderConfigError`."""
    settings.require_keys()
    vad_ = vad if vad is not None else load_vad()
    stts = [_build_stt(settings, choice) for choice in settings.choices("stt")]
    llms = [_build_llm(settings, choice) for choice in settings.choices("llm")]
    ttss = [_build_tts(settings, choice) for choice in settings.choices("tts")]
    return Providers(
        stt=stts[0] if len(stts) == 1 else stt.FallbackAdapter(stts, vad=vad_),
        llm=llms[0] if len(llms) == 1 else llm.FallbackAdapter(llms),
        tts=ttss[0] if len(ttss) == 1 else tts.FallbackAdapter(ttss),
        vad=vad_,
    )


def _build_stt(settings: ProviderSettings, choice: str) -> stt.STT[Any]:
    if choice == "offline":
        return OfflineSTT()
    component: stt.STT[Any] = cloud.build("stt", choice, settings)
    return component


def _build_llm(settings: ProviderSettings, choice: str) -> llm.LLM[Any]:
    if choice == "offline":
        return OfflineLLM(first_token_delay=settings.offline_llm_first_token_delay)
    component: llm.LLM[Any] = cloud.build("llm", choice, settings)
    return component


def _build_tts(settings: ProviderSettings, choice: str) -> tts.TTS[Any]:
    if choice == "offline":
        return OfflineTTS(voice=settings.offline_tts_voice)
    component: tts.TTS[Any] = cloud.build("tts", choice, settings)
    return component
