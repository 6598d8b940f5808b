"""Building the session's STT, LLM, TTS and VAD from `ProviderSettings`.

`offline` (the default) needs no key and no network: pocketsphinx, a template tutor and
Festival. `openai` and `deepgram` go through their LiveKit plugins (see `cloud`).
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
    stt_provider: str
    llm_provider: str
    tts_provider: str

    def describe(self) -> ProviderDescription:
        return ProviderDescription(
            stt=ModelInfo(provider=self.stt_provider, model=self.stt.model),
            llm=ModelInfo(provider=self.llm_provider, model=self.llm.model),
            tts=ModelInfo(provider=self.tts_provider, model=self.tts.model),
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
    """Construct the chosen providers. A chosen cloud provider without its key, or an
    offline engine that is not installed, raises `ProviderConfigError`."""
    settings.require_keys()
    stt_, stt_provider = _build_stt(settings)
    llm_, llm_provider = _build_llm(settings)
    tts_, tts_provider = _build_tts(settings)
    return Providers(
        stt=stt_,
        llm=llm_,
        tts=tts_,
        vad=vad if vad is not None else load_vad(),
        stt_provider=stt_provider,
        llm_provider=llm_provider,
        tts_provider=tts_provider,
    )


def _build_stt(settings: ProviderSettings) -> tuple[stt.STT[Any], str]:
    if settings.stt == "openai":
        return cloud.openai_stt(settings), "openai"
    if settings.stt == "deepgram":
        return cloud.deepgram_stt(settings), "deepgram"
    offline = OfflineSTT()
    return offline, offline.provider


def _build_llm(settings: ProviderSettings) -> tuple[llm.LLM[Any], str]:
    if settings.llm == "openai":
        return cloud.openai_llm(settings), "openai"
    offline = OfflineLLM(first_token_delay=settings.offline_llm_first_token_delay)
    return offline, offline.provider


def _build_tts(settings: ProviderSettings) -> tuple[tts.TTS[Any], str]:
    if settings.tts == "openai":
        return cloud.openai_tts(settings), "openai"
    offline = OfflineTTS(voice=settings.offline_tts_voice)
    return offline, offline.provider
