"""The cloud providers, through their LiveKit plugins.

The plugins are imported here, at import time, because LiveKit registers a plugin on
import and only allows that on the main thread; nothing is constructed (and nothing
touches the network) until `build_providers` asks for it.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import llm, stt, tts
from livekit.plugins import deepgram, openai
from pydantic import SecretStr

from turnlog.agent_gateway.providers.errors import ProviderConfigError
from turnlog.agent_gateway.providers.settings import ProviderSettings


def _key(secret: SecretStr | None, variable: str) -> str:
    if secret is None:
        raise ProviderConfigError(f"{variable} is not set")
    return secret.get_secret_value()


def openai_llm(settings: ProviderSettings) -> llm.LLM[Any]:
    return openai.LLM(
        model=settings.openai_llm_model,
        api_key=_key(settings.openai_api_key, "OPENAI_API_KEY"),
    )


def openai_stt(settings: ProviderSettings) -> stt.STT[Any]:
    """Non-streaming for the default model: the session wraps it with its VAD."""
    return openai.STT(
        model=settings.openai_stt_model,
        api_key=_key(settings.openai_api_key, "OPENAI_API_KEY"),
    )


def openai_tts(settings: ProviderSettings) -> tts.TTS[Any]:
    return openai.TTS(
        model=settings.openai_tts_model,
        voice=settings.openai_tts_voice,
        api_key=_key(settings.openai_api_key, "OPENAI_API_KEY"),
    )


def deepgram_stt(settings: ProviderSettings) -> stt.STT[Any]:
    return deepgram.STT(
        model=settings.deepgram_stt_model,
        language=settings.deepgram_language,
        api_key=_key(settings.deepgram_api_key, "DEEPGRAM_API_KEY"),
    )
