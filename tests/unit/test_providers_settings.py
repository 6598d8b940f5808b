"""Provider settings and selection: offline by default, cloud providers by choice, and a
missing key that fails at start with the variable's name and never the secret."""

from __future__ import annotations

import os

import pytest

from turnlog.agent_gateway.offline.llm import OfflineLLM
from turnlog.agent_gateway.offline.stt import OfflineSTT
from turnlog.agent_gateway.offline.tts import OfflineTTS
from turnlog.agent_gateway.providers import (
    GatewayError,
    ProviderConfigError,
    ProviderSettings,
    build_providers,
    load_provider_settings,
    load_vad,
)

pytestmark = pytest.mark.unit

SECRET = "sk-test-0123456789abcdef-do-not-print"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("TURNLOG_") or name in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_are_the_offline_profile() -> None:
    settings = load_provider_settings()

    assert (settings.stt, settings.llm, settings.tts) == ("offline", "offline", "offline")
    assert settings.openai_api_key is None
    assert settings.deepgram_api_key is None
    assert settings.offline_llm_first_token_delay == 0.0
    assert settings.offline_tts_voice == "cmu_us_slt_arctic_hts"


def test_every_variable_is_read(clean_env: pytest.MonkeyPatch) -> None:
    values = {
        "TURNLOG_STT": "deepgram",
        "TURNLOG_LLM": "openai",
        "TURNLOG_TTS": "openai",
        "TURNLOG_OPENAI_LLM_MODEL": "gpt-4o-mini",
        "TURNLOG_OPENAI_STT_MODEL": "whisper-1",
        "TURNLOG_OPENAI_TTS_MODEL": "tts-1",
        "TURNLOG_OPENAI_TTS_VOICE": "alloy",
        "TURNLOG_DEEPGRAM_STT_MODEL": "nova-2",
        "TURNLOG_DEEPGRAM_LANGUAGE": "en-GB",
        "TURNLOG_OFFLINE_LLM_FIRST_TOKEN_DELAY": "0.4",
        "OPENAI_API_KEY": SECRET,
        "DEEPGRAM_API_KEY": SECRET + "-dg",
    }
    for name, value in values.items():
        clean_env.setenv(name, value)

    settings = load_provider_settings()

    assert (settings.stt, settings.llm, settings.tts) == ("deepgram", "openai", "openai")
    assert settings.openai_llm_model == "gpt-4o-mini"
    assert settings.openai_stt_model == "whisper-1"
    assert settings.openai_tts_model == "tts-1"
    assert settings.openai_tts_voice == "alloy"
    assert settings.deepgram_stt_model == "nova-2"
    assert settings.deepgram_language == "en-GB"
    assert settings.offline_llm_first_token_delay == 0.4
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == SECRET
    assert settings.deepgram_api_key is not None
    assert settings.deepgram_api_key.get_secret_value() == SECRET + "-dg"


@pytest.mark.parametrize(
    ("stage", "choice", "variable"),
    [
        ("LLM", "openai", "OPENAI_API_KEY"),
        ("TTS", "openai", "OPENAI_API_KEY"),
        ("STT", "openai", "OPENAI_API_KEY"),
        ("STT", "deepgram", "DEEPGRAM_API_KEY"),
    ],
)
def test_a_chosen_cloud_provider_without_its_key_names_the_variable(
    clean_env: pytest.MonkeyPatch, stage: str, choice: str, variable: str
) -> None:
    clean_env.setenv(f"TURNLOG_{stage}", choice)

    with pytest.raises(ProviderConfigError) as raised:
        load_provider_settings()

    assert f"TURNLOG_{stage}={choice} needs {variable}" in str(raised.value)
    assert isinstance(raised.value, GatewayError)


def test_the_other_providers_key_does_not_count(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TURNLOG_STT", "deepgram")
    clean_env.setenv("OPENAI_API_KEY", SECRET)

    with pytest.raises(ProviderConfigError, match="DEEPGRAM_API_KEY"):
        load_provider_settings()


@pytest.mark.parametrize("value", ["", "   ", "changeme", "<your key>", "your-api-key"])
def test_an_empty_or_placeholder_key_is_refused(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("TURNLOG_LLM", "openai")
    clean_env.setenv("OPENAI_API_KEY", value)

    with pytest.raises(ProviderConfigError, match="TURNLOG_LLM=openai needs OPENAI_API_KEY"):
        load_provider_settings()


def test_an_unknown_choice_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TURNLOG_TTS", "anthropic")  # anthropic serves the LLM only

    with pytest.raises(ProviderConfigError, match="TURNLOG_TTS"):
        load_provider_settings()


def test_a_secret_never_shows(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", SECRET)
    clean_env.setenv("DEEPGRAM_API_KEY", SECRET)
    clean_env.setenv("TURNLOG_OFFLINE_LLM_FIRST_TOKEN_DELAY", "-1")  # invalid, to fail

    with pytest.raises(ProviderConfigError) as raised:
        load_provider_settings()
    assert "TURNLOG_OFFLINE_LLM_FIRST_TOKEN_DELAY" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None  # the pydantic error (with inputs) is not chained

    clean_env.delenv("TURNLOG_OFFLINE_LLM_FIRST_TOKEN_DELAY")
    settings = load_provider_settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()


def test_keys_are_checked_again_when_building() -> None:
    settings = ProviderSettings(llm="openai")

    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
        build_providers(settings)


@pytest.mark.asyncio
async def test_offline_profile_builds_local_engines() -> None:
    providers = build_providers(load_provider_settings())
    try:
        assert isinstance(providers.stt, OfflineSTT)
        assert isinstance(providers.llm, OfflineLLM)
        assert isinstance(providers.tts, OfflineTTS)
        assert providers.stt.capabilities.streaming
        assert providers.stt.capabilities.interim_results
        assert providers.tts.sample_rate == 24000
        description = providers.describe()
        assert (description.stt.provider, description.stt.model) == ("pocketsphinx", "en-us")
        assert description.llm.provider == "turnlog-offline"
        assert description.llm.model == "tutor-script-v1"
        assert (description.tts.provider, description.tts.model) == (
            "festival",
            "cmu_us_slt_arctic_hts",
        )
    finally:
        await providers.aclose()


@pytest.mark.asyncio
async def test_cloud_profile_builds_plugins_without_touching_the_network() -> None:
    from livekit.plugins import deepgram, openai

    settings = ProviderSettings(
        stt="deepgram",
        llm="openai",
        tts="openai",
        OPENAI_API_KEY=SECRET,
        DEEPGRAM_API_KEY=SECRET,
    )
    providers = build_providers(settings, vad=load_vad())
    try:
        assert isinstance(providers.stt, deepgram.STT)
        assert isinstance(providers.llm, openai.LLM)
        assert isinstance(providers.tts, openai.TTS)
        description = providers.describe()
        # as the plugins name themselves (OpenAI's by its API host)
        assert (description.stt.provider, description.stt.model) == ("Deepgram", "nova-3")
        assert (description.llm.provider, description.llm.model) == (
            "api.openai.com",
            "gpt-4.1-mini",
        )
        assert (description.tts.provider, description.tts.model) == (
            "api.openai.com",
            "gpt-4o-mini-tts",
        )
    finally:
        await providers.aclose()


def test_offline_tts_without_festival_names_the_packages(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("PATH", "/nonexistent")

    with pytest.raises(ProviderConfigError, match="festival festvox-us-slt-hts"):
        OfflineTTS()


def test_offline_tts_with_a_missing_voice_names_the_variable() -> None:
    with pytest.raises(ProviderConfigError, match="TURNLOG_OFFLINE_TTS_VOICE"):
        OfflineTTS(voice="cmu_us_nobody_hts")
    with pytest.raises(ProviderConfigError, match="not a Festival voice name"):
        OfflineTTS(voice="slt) (quit")
