"""The examples' provider choice: STT, LLM, TTS and VAD for an agent session, from the
environment (`ProviderSettings`). Not used by `turnlog.record`, which reads whatever
components the session holds.

`offline` (the default) needs no key and no network: pocketsphinx, a template tutor and
Festival. The cloud providers go through the plugins LiveKit publishes, one extra each;
several for a stage through LiveKit's `FallbackAdapter`.

`Providers`, `ProviderDescription`, `build_providers` and `load_vad` live in `factory` and
load on first use: the settings and the errors import without LiveKit (the worker reads
its configuration before LiveKit and prometheus-client are imported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turnlog.agent_gateway.errors import GatewayError
from turnlog.agent_gateway.providers.errors import ProviderConfigError
from turnlog.agent_gateway.providers.settings import (
    NEEDS,
    ProviderSettings,
    load_provider_settings,
    stage_choices,
)

if TYPE_CHECKING:
    from turnlog.agent_gateway.providers.cloud import import_plugins
    from turnlog.agent_gateway.providers.factory import (
        ProviderDescription,
        Providers,
        build_providers,
        load_vad,
    )

__all__ = [
    "NEEDS",
    "GatewayError",
    "ProviderConfigError",
    "ProviderDescription",
    "ProviderSettings",
    "Providers",
    "build_providers",
    "import_plugins",
    "load_provider_settings",
    "load_vad",
    "stage_choices",
]

_FACTORY_NAMES = frozenset({"ProviderDescription", "Providers", "build_providers", "load_vad"})
_CLOUD_NAMES = frozenset({"import_plugins"})


def __getattr__(name: str) -> Any:
    if name in _FACTORY_NAMES:
        from turnlog.agent_gateway.providers import factory

        return getattr(factory, name)
    if name in _CLOUD_NAMES:
        from turnlog.agent_gateway.providers import cloud

        return getattr(cloud, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
