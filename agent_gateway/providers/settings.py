"""Which STT, LLM and TTS the examples run, read from the environment.

`TURNLOG_STT`, `TURNLOG_LLM` and `TURNLOG_TTS` each name a provider, or several separated
by commas, which are then tried in order through LiveKit's `FallbackAdapter`
(`TURNLOG_LLM=openai,anthropic`). Every default needs no key and no network: the offline
profile. A chosen provider needs its variables (`NEEDS`): a missing one fails at start,
named, never with its value. The keys keep the names LiveKit and the provider SDKs use.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnlog.agent_gateway.providers.errors import ProviderConfigError

Stage = Literal["stt", "llm", "tts"]
STAGES: Final[tuple[Stage, ...]] = ("stt", "llm", "tts")

NEEDS: Final[dict[str, dict[Stage, tuple[str, ...]]]] = {
    "openai": {"stt": ("OPENAI_API_KEY",), "llm": ("OPENAI_API_KEY",),
               "tts": ("OPENAI_API_KEY",)},
    "deepgram": {"stt": ("DEEPGRAM_API_KEY",), "tts": ("DEEPGRAM_API_KEY",)},
    "anthropic": {"llm": ("ANTHROPIC_API_KEY",)},
    "google": {"llm": ("GOOGLE_API_KEY",), "tts": ("GOOGLE_APPLICATION_CREDENTIALS",)},
    "azure": {"stt": ("AZURE_SPEECH_KEY", "AZURE_SPEECH_REGION"),
              "tts": ("AZURE_SPEECH_KEY", "AZURE_SPEECH_REGION")},
    "aws": {"llm": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "tts": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    "elevenlabs": {"stt": ("ELEVEN_API_KEY",), "tts": ("ELEVEN_API_KEY",)},
    "cartesia": {"stt": ("CARTESIA_API_KEY",), "tts": ("CARTESIA_API_KEY",)},
}  # fmt: skip
"""Each cloud provider: the stages it serves and the variables each stage needs."""

_PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "replace-me", "your-api-key", "your_api_key", "xxx", "todo", "none"}
)


def stage_choices(stage: Stage) -> tuple[str, ...]:
    """The providers a stage accepts: `offline`, then every cloud provider that serves it."""
    return ("offline", *(name for name, stages in NEEDS.items() if stage in stages))


def _secret(alias: str) -> SecretStr | None:
    return Field(default=None, alias=alias)


class ProviderSettings(BaseSettings):
    """The provider(s) of each stage, their models, and the cloud providers' keys."""

    model_config = SettingsConfigDict(
        env_prefix="TURNLOG_", extra="ignore", frozen=True, populate_by_name=True
    )

    stt: str = "offline"
    """Speech-to-text, one or several in fallback order: `offline` (pocketsphinx),
    `openai`, `deepgram`, `azure`, `elevenlabs`, `cartesia`."""
    llm: str = "offline"
    """LLM, one or several: `offline` (the deterministic tutor), `openai`, `anthropic`,
    `google`, `aws`."""
    tts: str = "offline"
    """Text-to-speech, one or several: `offline` (Festival), `openai`, `deepgram`,
    `google`, `azure`, `aws`, `elevenlabs`, `cartesia`."""

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

    openai_api_key: SecretStr | None = _secret("OPENAI_API_KEY")
    deepgram_api_key: SecretStr | None = _secret("DEEPGRAM_API_KEY")
    anthropic_api_key: SecretStr | None = _secret("ANTHROPIC_API_KEY")
    google_api_key: SecretStr | None = _secret("GOOGLE_API_KEY")
    google_application_credentials: SecretStr | None = _secret("GOOGLE_APPLICATION_CREDENTIALS")
    azure_speech_key: SecretStr | None = _secret("AZURE_SPEECH_KEY")
    azure_speech_region: SecretStr | None = _secret("AZURE_SPEECH_REGION")
    aws_access_key_id: SecretStr | None = _secret("AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = _secret("AWS_SECRET_ACCESS_KEY")
    eleven_api_key: SecretStr | None = _secret("ELEVEN_API_KEY")
    cartesia_api_key: SecretStr | None = _secret("CARTESIA_API_KEY")

    @field_validator("stt", "llm", "tts")
    @classmethod
    def _known_providers(cls, value: str, info: object) -> str:
        stage: Stage = getattr(info, "field_name")  # noqa: B009 - pydantic's ValidationInfo
        names = [name.strip() for name in value.split(",")]
        allowed = stage_choices(stage)
        unknown = [name for name in names if name not in allowed]
        if unknown or not all(names):
            raise ValueError(
                f"{', '.join(unknown) or 'an empty name'} is not a {stage.upper()} provider "
                f"(one or several of: {', '.join(allowed)})"
            )
        if len(set(names)) != len(names):
            raise ValueError("a provider is named twice")
        return ",".join(names)

    def choices(self, stage: Stage) -> tuple[str, ...]:
        """The providers of `stage`, in fallback order."""
        return tuple(str(getattr(self, stage)).split(","))

    def secret(self, variable: str) -> str | None:
        """The value of one of the keys, by its variable's name (None when not set)."""
        for name, field in type(self).model_fields.items():
            if field.alias == variable:
                value = getattr(self, name)
                return value.get_secret_value() if isinstance(value, SecretStr) else None
        raise KeyError(variable)

    def require_keys(self) -> None:
        """Fail with the variable's name when a chosen provider lacks a usable value."""
        for stage in STAGES:
            for choice in self.choices(stage):
                for variable in NEEDS.get(choice, {}).get(stage, ()):
                    problem = _key_problem(self.secret(variable))
                    if problem:
                        raise ProviderConfigError(
                            f"TURNLOG_{stage.upper()}={getattr(self, stage)} needs "
                            f"{variable} ({problem})"
                        )


def _key_problem(value: str | None) -> str | None:
    if value is None:
        return "not set"
    value = value.strip()
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
        problems.append(f"{_variable_name(field)}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid provider settings: " + "; ".join(problems)


def load_provider_settings() -> ProviderSettings:
    """Read the settings from the environment and check the chosen providers' keys."""
    try:
        settings = ProviderSettings()
    except ValidationError as e:
        raise ProviderConfigError(_describe_validation_error(e)) from None
    settings.require_keys()
    return settings
