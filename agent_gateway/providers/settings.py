"""Which STT, LLM and TTS the gateway runs, read from the environment.

Our variables start with `TURNLOG_`; the API keys keep the names LiveKit and the provider
SDKs use (`OPENAI_API_KEY`, `DEEPGRAM_API_KEY`). Every default needs no key and no
network: the offline profile.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnlog.agent_gateway.providers.errors import ProviderConfigError

SttChoice = Literal["offline", "openai", "deepgram"]
LlmChoice = Literal["offline", "openai"]
TtsChoice = Literal["offline", "openai"]

_PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "replace-me", "your-api-key", "your_api_key", "xxx", "todo", "none"}
)


class ProviderSettings(BaseSettings):
    """The provider of each stage, its model, and the keys of the cloud providers."""

    model_config = SettingsConfigDict(
        env_prefix="TURNLOG_", extra="ignore", frozen=True, populate_by_name=True
    )

    stt: SttChoice = "offline"
    """Speech-to-text: `offline` (pocketsphinx), `openai` or `deepgram`."""
    llm: LlmChoice = "offline"
    """LLM: `offline` (the deterministic tutor) or `openai`."""
    tts: TtsChoice = "offline"
    """Text-to-speech: `offline` (Festival) or `openai`."""

    openai_llm_model: str = "gpt-4.1-mini"
    openai_stt_model: str = "gpt-4o-mini-transcribe"
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "ash"
    deepgram_stt_model: str = "nova-3"
    deepgram_language: str = "en-US"

    offline_llm_first_token_delay: float = Field(default=0.0, ge=0.0, le=10.0)
    """Simulated time to first token of the offline LLM, in seconds."""
    offline_tts_voice: str = "cmu_us_slt_arctic_hts"
    """Festival voice of the offline TTS (Debian package `festvox-us-slt-hts`)."""

    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    deepgram_api_key: SecretStr | None = Field(default=None, alias="DEEPGRAM_API_KEY")

    def require_keys(self) -> None:
        """Fail with the variable's name when a chosen cloud provider has no usable key."""
        needs = [
            (f"TURNLOG_{stage.upper()}={choice}", variable, key)
            for stage, choice in (("stt", self.stt), ("llm", self.llm), ("tts", self.tts))
            for provider, variable, key in (
                ("openai", "OPENAI_API_KEY", self.openai_api_key),
                ("deepgram", "DEEPGRAM_API_KEY", self.deepgram_api_key),
            )
            if choice == provider
        ]
        for chosen, variable, key in needs:
            problem = _key_problem(key)
            if problem:
                raise ProviderConfigError(f"{chosen} needs {variable} ({problem})")


def _key_problem(key: SecretStr | None) -> str | None:
    if key is None:
        return "not set"
    value = key.get_secret_value().strip()
    if not value:
        return "empty"
    if value.lower() in _PLACEHOLDERS or value.startswith("<"):
        return "a placeholder, not a key"
    return None


def _variable_name(field: str) -> str:
    info = ProviderSettings.model_fields.get(field)
    if info is not None and info.alias:
        return info.alias
    return f"TURNLOG_{field.upper()}"


def _describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = str(item["loc"][0]) if item["loc"] else "?"
        problems.append(f"{_variable_name(field)}: {item['msg']}")
    return "invalid provider settings: " + "; ".join(problems)


def load_provider_settings() -> ProviderSettings:
    """Read the settings from the environment and check the chosen providers' keys."""
    try:
        settings = ProviderSettings()
    except ValidationError as e:
        raise ProviderConfigError(_describe_validation_error(e)) from None
    settings.require_keys()
    return settings
