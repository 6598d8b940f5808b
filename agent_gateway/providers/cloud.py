"""The examples' cloud providers, through the plugins LiveKit publishes: which plugin serves
which stage, the environment variables each needs, the extra that installs it, and how each
component is built (with the plugin's defaults unless a setting says otherwise).

A plugin registers itself with LiveKit when it is imported, and only on the main thread:
`import_plugins` imports the chosen ones (the worker calls it at start, before any job);
nothing is constructed, and nothing touches the network, until `build_*` is called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from turnlog.agent_gateway.providers.errors import ProviderConfigError
from turnlog.agent_gateway.providers.settings import ProviderSettings, Stage

Builder = Callable[[ModuleType, ProviderSettings], Any]


@dataclass(frozen=True)
class Plugin:
    """One LiveKit plugin package as the examples use it."""

    module: str
    """Import path, e.g. `livekit.plugins.openai`."""
    extra: str
    """The `turnlog` extra that installs it."""
    build: dict[Stage, Builder]
    """How each stage it serves is built (`settings.NEEDS` says what each needs)."""

    def load(self, choice: str) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ImportError:
            raise ProviderConfigError(
                f"provider {choice!r} needs its LiveKit plugin: pip install 'turnlog[{self.extra}]'"
            ) from None


def _key(settings: ProviderSettings, variable: str) -> str:
    value = settings.secret(variable)
    if value is None:
        raise ProviderConfigError(f"{variable} is not set")
    return value


PLUGINS: Final[dict[str, Plugin]] = {
    "openai": Plugin(
        "livekit.plugins.openai", "openai",
        build={
            "stt": lambda m, s: m.STT(model=s.openai_stt_model,
                                      api_key=_key(s, "OPENAI_API_KEY")),
            "llm": lambda m, s: m.LLM(model=s.openai_llm_model,
                                      api_key=_key(s, "OPENAI_API_KEY")),
            "tts": lambda m, s: m.TTS(model=s.openai_tts_model, voice=s.openai_tts_voice,
                                      api_key=_key(s, "OPENAI_API_KEY")),
        },
    ),
    "deepgram": Plugin(
        "livekit.plugins.deepgram", "deepgram",
        build={
            "stt": lambda m, s: m.STT(model=s.deepgram_stt_model, language=s.deepgram_language,
                                      api_key=_key(s, "DEEPGRAM_API_KEY")),
            "tts": lambda m, s: m.TTS(api_key=_key(s, "DEEPGRAM_API_KEY")),
        },
    ),
    "anthropic": Plugin(
        "livekit.plugins.anthropic", "anthropic",
        build={"llm": lambda m, s: m.LLM(api_key=_key(s, "ANTHROPIC_API_KEY"))},
    ),
    "google": Plugin(
        "livekit.plugins.google", "google",
        build={
            "llm": lambda m, s: m.LLM(api_key=_key(s, "GOOGLE_API_KEY")),
            "tts": lambda m, s: m.TTS(
                credentials_file=_key(s, "GOOGLE_APPLICATION_CREDENTIALS")),
        },
    ),
    "azure": Plugin(
        "livekit.plugins.azure", "azure",
        build={
            "stt": lambda m, s: m.STT(speech_key=_key(s, "AZURE_SPEECH_KEY"),
                                      speech_region=_key(s, "AZURE_SPEECH_REGION")),
            "tts": lambda m, s: m.TTS(speech_key=_key(s, "AZURE_SPEECH_KEY"),
                                      speech_region=_key(s, "AZURE_SPEECH_REGION")),
        },
    ),
    "aws": Plugin(
        "livekit.plugins.aws", "aws",
        # the AWS SDK reads its credentials (settings.NEEDS) from the environment itself
        build={"llm": lambda m, s: m.LLM(), "tts": lambda m, s: m.TTS()},
    ),
    "elevenlabs": Plugin(
        "livekit.plugins.elevenlabs", "elevenlabs",
        build={
            "stt": lambda m, s: m.STT(api_key=_key(s, "ELEVEN_API_KEY")),
            "tts": lambda m, s: m.TTS(api_key=_key(s, "ELEVEN_API_KEY")),
        },
    ),
    "cartesia": Plugin(
        "livekit.plugins.cartesia", "cartesia",
        build={
            "stt": lambda m, s: m.STT(api_key=_key(s, "CARTESIA_API_KEY")),
            "tts": lambda m, s: m.TTS(api_key=_key(s, "CARTESIA_API_KEY")),
        },
    ),
}  # fmt: skip
"""Every cloud provider of the examples, by the name `TURNLOG_STT/LLM/TTS` use."""


def import_plugins(settings: ProviderSettings) -> None:
    """Import (so register with LiveKit) every chosen plugin; call it on the main thread."""
    for stage in ("stt", "llm", "tts"):
        for choice in settings.choices(stage):
            if choice in PLUGINS:
                PLUGINS[choice].load(choice)


def build(stage: Stage, choice: str, settings: ProviderSettings) -> Any:
    """One cloud component: plugin `choice` for `stage`."""
    plugin = PLUGINS[choice]
    return plugin.build[stage](plugin.load(choice), settings)
