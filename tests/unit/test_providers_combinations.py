"""Every provider the examples can choose, and fallback chains, built without network; the
`session.started` that `turnlog.record` would publish names each component's provider and
model, read from the plugin objects themselves."""

from __future__ import annotations

import os
from typing import Any, cast

import pytest
from livekit.agents import AgentSession, JobContext, llm, stt, tts, vad
from livekit.protocol import agent, models

from tests.unit.test_gateway_config_worker import FakeJobContext, _Room, _RunningJob
from turnlog.agent_gateway.hooks import MemorySink, RecorderIdentity, SessionRecorder
from turnlog.agent_gateway.providers import (
    NEEDS,
    ProviderConfigError,
    ProviderSettings,
    build_providers,
    import_plugins,
    load_provider_settings,
    load_vad,
    stage_choices,
)
from turnlog.agent_gateway.record import session_started

pytestmark = pytest.mark.unit

EVERY_KEY = {var for stages in NEEDS.values() for needs in stages.values() for var in needs}
FAKE_KEYS = {name: f"test-{name.lower()}-0123456789" for name in EVERY_KEY}

EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("stt", "openai"): ("api.openai.com", "gpt-4o-mini-transcribe"),
    ("stt", "deepgram"): ("Deepgram", "nova-3"),
    ("stt", "azure"): ("Azure STT", "unknown"),
    ("stt", "elevenlabs"): ("ElevenLabs", "scribe_v1"),
    ("stt", "cartesia"): ("Cartesia", "ink-2"),
    ("llm", "openai"): ("api.openai.com", "gpt-4.1-mini"),
    ("llm", "anthropic"): ("api.anthropic.com", "claude-sonnet-4-6"),
    ("llm", "google"): ("Gemini", "gemini-3.8-flash"),
    ("llm", "aws"): ("AWS Bedrock", "amazon.nova-2-lite-v1:0"),
    ("tts", "openai"): ("api.openai.com", "gpt-4o-mini-tts"),
    ("tts", "deepgram"): ("Deepgram", "aura-2-andromeda-en"),
    ("tts", "google"): ("Google Cloud Platform", "gemini-2.5-flash-tts"),
    ("tts", "azure"): ("Azure TTS", "test-azure_speech_region-0123456789:en-US-JennyNeural"),
    ("tts", "aws"): ("Amazon Polly", "generative"),
    ("tts", "elevenlabs"): ("ElevenLabs", "eleven_turbo_v2_5"),
    ("tts", "cartesia"): ("Cartesia", "sonic-3"),
}
"""What each plugin, at its pinned version, names as its provider and default model."""


@pytest.fixture(scope="module")
def silero() -> vad.VAD:
    return load_vad()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TURNLOG_") or name in EVERY_KEY:
            monkeypatch.delenv(name)
    for name, value in FAKE_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


def recorded_start(session: AgentSession[Any]) -> Any:
    job = agent.Job(id="AJ_1", agent_name="tutor", room=models.Room(name="r1", sid="RM_1"))
    ctx = cast(JobContext, cast(Any, FakeJobContext(job, "AW_1", _Room("r1"), _RunningJob(0))))
    sink = MemorySink()
    recorder = SessionRecorder(sink=sink, identity=RecorderIdentity(
        agent_name="tutor", worker_id="AW_1", room_name="r1"))  # fmt: skip
    recorder.start(session, started=session_started(ctx, session, "tutor"))
    recorder.close()
    assert sink.types[0] == "turnlog.session.started.v1"
    return sink.events[0].data


CHOICES = [(stage, name) for stage in ("stt", "llm", "tts")
           for name in stage_choices(stage) if name != "offline"]  # type: ignore[arg-type]
OTHERS = {"stt": "deepgram", "llm": "openai", "tts": "openai"}


def test_the_expectations_cover_every_choice() -> None:
    assert sorted(EXPECTED) == sorted(CHOICES)


@pytest.mark.asyncio
@pytest.mark.parametrize(("stage", "choice"), CHOICES)
async def test_each_provider_is_recorded_with_its_model(
    keys: None, silero: vad.VAD, stage: str, choice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # through monkeypatch: a choice left in the environment would reach later tests'
    # services (an e2e gateway started with TURNLOG_STT=openai and no key)
    monkeypatch.setenv(f"TURNLOG_{stage.upper()}", choice)
    for other, name in OTHERS.items():
        if other != stage:
            monkeypatch.setenv(f"TURNLOG_{other.upper()}", name)
    settings = load_provider_settings()
    import_plugins(settings)
    providers = build_providers(settings, vad=silero)
    try:
        session: AgentSession[Any] = AgentSession(
            stt=providers.stt, llm=providers.llm, tts=providers.tts, vad=providers.vad)
        started = recorded_start(session)
        info = getattr(started, stage)
        assert (info.provider, info.model) == EXPECTED[(stage, choice)]
    finally:
        await providers.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(("stage", "chain", "adapter"), [
    ("stt", "deepgram,cartesia", stt.FallbackAdapter),
    ("llm", "openai,anthropic,google", llm.FallbackAdapter),
    ("tts", "elevenlabs,openai", tts.FallbackAdapter),
])  # fmt: skip
async def test_several_providers_become_a_fallback_chain(
    keys: None, silero: vad.VAD, stage: str, chain: str, adapter: type[Any]
) -> None:
    values = {**OTHERS, stage: chain}
    settings = ProviderSettings(**values)
    import_plugins(settings)
    providers = build_providers(settings, vad=silero)
    try:
        component = getattr(providers, stage)
        assert isinstance(component, adapter)
        session: AgentSession[Any] = AgentSession(
            stt=providers.stt, llm=providers.llm, tts=providers.tts, vad=providers.vad)
        info = getattr(recorded_start(session), stage)
        # the adapter names the instance that serves first: the first of the chain
        assert (info.provider, info.model) == EXPECTED[(stage, chain.split(",")[0])]
    finally:
        await providers.aclose()


@pytest.mark.parametrize(("stage", "choice"), CHOICES)
def test_a_chosen_provider_without_its_keys_names_the_variable(
    keys: None, monkeypatch: pytest.MonkeyPatch, stage: str, choice: str
) -> None:
    variable = NEEDS[choice][stage][-1]  # type: ignore[index]
    monkeypatch.delenv(variable)
    monkeypatch.setenv(f"TURNLOG_{stage.upper()}", choice)

    with pytest.raises(ProviderConfigError) as raised:
        load_provider_settings()

    assert f"TURNLOG_{stage.upper()}={choice} needs {variable} (not set)" in str(raised.value)
    assert FAKE_KEYS[variable] not in str(raised.value)


def test_an_unknown_or_repeated_provider_is_refused(keys: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_STT", "anthropic")  # an LLM, not a recognizer
    with pytest.raises(ProviderConfigError, match="TURNLOG_STT: anthropic is not a STT provider"):
        load_provider_settings()
    monkeypatch.setenv("TURNLOG_STT", "deepgram,deepgram")
    with pytest.raises(ProviderConfigError, match="named twice"):
        load_provider_settings()


@pytest.mark.asyncio
async def test_a_realtime_model_is_recorded_as_the_sessions_llm() -> None:
    from livekit.plugins import openai

    model = openai.realtime.RealtimeModel(api_key="sk-test-0123456789")
    session: AgentSession[Any] = AgentSession(llm=model)

    started = recorded_start(session)

    assert (started.llm.provider, started.llm.model) == ("api.openai.com", "gpt-realtime")
    assert started.stt is None
    assert started.tts is None
