"""STT, LLM, TTS and VAD for the agent session, chosen by `ProviderSettings`.

`offline` (the default) needs no key and no network: pocketsphinx, a template tutor and
Festival. `openai` and `deepgram` go through their LiveKit plugins.

`Providers`, `ProviderDescription`, `build_providers` and `load_vad` live in `factory` and
load on first use: the settings and the errors import without LiveKit (the worker reads
its configuration before LiveKit and prometheus-client are imported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turnlog.agent_gateway.errors import GatewayError
from turnlog.agent_gateway.providers.errors import ProviderConfigError
from turnlog.agent_gateway.providers.settings import ProviderSettings, load_provider_settings

if TYPE_CHECKING:
    from turnlog.agent_gateway.providers.factory import (
        ProviderDescription,
        Providers,
        build_providers,
        load_vad,
    )

__all__ = [
    "GatewayError",
    "ProviderConfigError",
    "ProviderDescription",
    "ProviderSettings",
    "Providers",
    "build_providers",
    "load_provider_settings",
    "load_vad",
]

_FACTORY_NAMES = frozenset({"ProviderDescription", "Providers", "build_providers", "load_vad"})


def __getattr__(name: str) -> Any:
    if name in _FACTORY_NAMES:
        from turnlog.agent_gateway.providers import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
