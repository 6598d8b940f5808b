"""Gateway settings: defaults for the local stack, failures that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnlog.agent_gateway.config import (
    default_spool_dir,
    is_placeholder,
    load_gateway_settings,
    load_record_settings,
)
from turnlog.agent_gateway.errors import ConfigurationError, GatewayError

pytestmark = pytest.mark.unit

OURS = (
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "TURNLOG_AGENT_NAME",
    "TURNLOG_KAFKA_BOOTSTRAP",
    "TURNLOG_TOPIC_PREFIX",
    "TURNLOG_SPOOL_DIR",
    "TURNLOG_PUBLISHER_QUEUE_SIZE",
    "TURNLOG_PUBLISHER_CLOSE_TIMEOUT",
    "TURNLOG_GATEWAY_METRICS_PORT",
    "TURNLOG_GATEWAY_METRICS_HOST",
    "TURNLOG_GATEWAY_METRICS_DIR",
    "TURNLOG_GATEWAY_HEALTH_HOST",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OURS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def dev_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "secret")


def test_defaults_work_with_the_local_stack(clean_env: pytest.MonkeyPatch) -> None:
    dev_credentials(clean_env)

    settings = load_gateway_settings()

    assert settings.livekit_url == "ws://127.0.0.1:7880"
    assert settings.agent_name == "turnlog-tutor"
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.topic == "turnlog.events"
    assert settings.spool_dir == default_spool_dir()
    assert settings.spool_dir.parts[-2:] == ("turnlog", "spool")
    assert settings.metrics_host == "127.0.0.1"
    assert settings.metrics_port > 0
    assert settings.livekit_api_key.get_secret_value() == "devkey"


def test_every_listener_binds_loopback_by_default(clean_env: pytest.MonkeyPatch) -> None:
    from turnlog.agent_gateway.worker import server_options

    dev_credentials(clean_env)
    from examples.tutor.entrypoint import entrypoint

    options = server_options(load_gateway_settings(), entrypoint=entrypoint)

    assert options.host == "127.0.0.1"  # LiveKit's own default is every interface
    assert load_gateway_settings().metrics_host == "127.0.0.1"


def test_every_variable_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dev_credentials(clean_env)
    values = {
        "LIVEKIT_URL": "wss://example.livekit.cloud",
        "TURNLOG_AGENT_NAME": "other",
        "TURNLOG_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "TURNLOG_TOPIC_PREFIX": "test-1.",
        "TURNLOG_SPOOL_DIR": str(tmp_path / "spool"),
        "TURNLOG_PUBLISHER_QUEUE_SIZE": "5",
        "TURNLOG_PUBLISHER_CLOSE_TIMEOUT": "2.5",
        "TURNLOG_GATEWAY_METRICS_PORT": "0",
        "TURNLOG_GATEWAY_METRICS_HOST": "0.0.0.0",
        "TURNLOG_GATEWAY_METRICS_DIR": str(tmp_path / "metrics"),
    }
    for name, value in values.items():
        clean_env.setenv(name, value)

    settings = load_gateway_settings()

    assert settings.livekit_url == "wss://example.livekit.cloud"
    assert settings.agent_name == "other"
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.topic == "test-1.turnlog.events"
    assert settings.spool_dir == tmp_path / "spool"
    assert settings.queue_size == 5
    assert settings.publisher_close_timeout == 2.5
    assert settings.metrics_port == 0
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_dir == tmp_path / "metrics"


def test_missing_credentials_are_named() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_gateway_settings()

    assert caught.value.variables == ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
    assert "LIVEKIT_API_KEY is not set" in str(caught.value)
    assert "LIVEKIT_API_SECRET is not set" in str(caught.value)
    assert isinstance(caught.value, GatewayError)


@pytest.mark.parametrize("value", ["", "  ", "changeme", "<your secret>", "xxxx", "your-secret"])
def test_placeholder_secret_is_named_never_shown(
    clean_env: pytest.MonkeyPatch, value: str
) -> None:
    dev_credentials(clean_env)
    clean_env.setenv("LIVEKIT_API_SECRET", value)

    with pytest.raises(ConfigurationError, match="LIVEKIT_API_SECRET") as caught:
        load_gateway_settings()

    assert caught.value.variables == ("LIVEKIT_API_SECRET",)
    if value.strip():
        assert value not in str(caught.value)


def test_real_secrets_are_not_placeholders() -> None:
    assert not is_placeholder("secret")  # the LiveKit dev server's own secret
    assert not is_placeholder("devkey")
    assert not is_placeholder("APIxk2Jd93kfLa")


def test_settings_never_show_secrets(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LIVEKIT_API_KEY", "key-5f1c2a")
    clean_env.setenv("LIVEKIT_API_SECRET", "secret-9d8e7f")

    settings = load_gateway_settings()

    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "key-5f1c2a" not in text
        assert "secret-9d8e7f" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVEKIT_URL", "127.0.0.1:7880"),
        ("TURNLOG_GATEWAY_METRICS_PORT", "not-a-port"),
        ("TURNLOG_GATEWAY_METRICS_PORT", "70000"),
        ("TURNLOG_PUBLISHER_QUEUE_SIZE", "0"),
        ("TURNLOG_KAFKA_BOOTSTRAP", ""),
    ],
)
def test_invalid_values_are_named(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    dev_credentials(clean_env)
    clean_env.setenv(name, value)

    with pytest.raises(ConfigurationError, match=f"^invalid gateway settings: {name}: "):
        load_gateway_settings()


def test_settings_are_loaded_by_a_function_not_at_import() -> None:
    import turnlog.agent_gateway.config as config

    assert not [name for name, value in vars(config).items() if type(value).__name__ == (
        "GatewaySettings"
    )]


def test_the_recorder_needs_no_livekit_credentials_and_keywords_win(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("TURNLOG_KAFKA_BOOTSTRAP", "k1:9092")
    clean_env.setenv("TURNLOG_TOPIC_PREFIX", "env.")

    settings = load_record_settings(topic_prefix="kw.", spool_dir=tmp_path, queue_size=None)

    assert settings.kafka_bootstrap == "k1:9092"  # the environment
    assert settings.topic == "kw.turnlog.events"  # the keyword wins
    assert settings.spool_dir == tmp_path
    assert settings.queue_size == 10_000  # None leaves the default


def test_a_bad_recorder_setting_is_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TURNLOG_PUBLISHER_QUEUE_SIZE", "0")

    with pytest.raises(ConfigurationError, match="TURNLOG_PUBLISHER_QUEUE_SIZE"):
        load_record_settings()
    with pytest.raises(ConfigurationError, match="queue_size"):
        load_record_settings(queue_size=-1)
    with pytest.raises(ConfigurationError, match="unknown recorder settings: bootstrap"):
        load_record_settings(bootstrap="x")
