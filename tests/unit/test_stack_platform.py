"""The platform launcher's pure parts: LiveKit's config and binary, the services' settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from turnlog.agent_gateway.config import load_gateway_settings
from turnlog.api.settings import load_api_settings
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.errors import PrerequisiteError
from turnlog.infra.stack.livekit import LiveKit, config_yaml
from turnlog.infra.stack.services import (
    Service,
    provider_choice,
    service_environment,
    service_specs,
)
from turnlog.streams.config import load_streams_settings

pytestmark = pytest.mark.unit


def settings_in(tmp_path: Path, **overrides: object) -> StackSettings:
    return StackSettings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                         **overrides)  # type: ignore[arg-type]  # fmt: skip


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_livekit_config_keeps_every_listener_on_loopback(tmp_path: Path) -> None:
    config = yaml.safe_load(config_yaml(settings_in(tmp_path, livekit_port=17880)))

    assert config["port"] == 17880
    assert config["bind_addresses"] == ["127.0.0.1"]
    rtc = config["rtc"]
    assert rtc["tcp_port"] == 0  # LiveKit binds its TCP media port on every interface
    assert rtc["node_ip"] == "127.0.0.1"
    assert rtc["use_external_ip"] is False
    assert rtc["interfaces"] == {"includes": ["lo"]}
    assert config["keys"] == {"devkey": "secret"}


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_missing_go_is_named_with_the_release_to_install(
    tmp_path: Path, empty_path: Path
) -> None:
    with pytest.raises(PrerequisiteError, match="Go is not installed") as info:
        LiveKit(settings_in(tmp_path)).ensure_binary()
    assert "Go 1.26" in info.value.fix
    assert "livekit-server" in info.value.fix


def test_a_livekit_server_on_path_is_used_as_it_is(tmp_path: Path, empty_path: Path) -> None:
    on_path = executable(empty_path / "livekit-server")
    assert LiveKit(settings_in(tmp_path)).ensure_binary() == on_path


def test_the_cached_build_is_reused_without_go(tmp_path: Path, empty_path: Path) -> None:
    settings = settings_in(tmp_path, livekit_version="v1.13.5")
    built = executable(settings.cache_dir / "livekit-v1.13.5" / "server")
    assert LiveKit(settings).ensure_binary() == built


def test_every_service_reads_the_launcher_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_in(
        tmp_path, topic_prefix="p.", api_port=18000, streams_metrics_port=19465,
        gateway_metrics_port=19464, gateway_health_port=18081, livekit_port=17880,
        postgres_port=25432, kafka_port=29092, clickhouse_url="http://127.0.0.1:8123",
    )  # fmt: skip
    for name, value in service_environment(settings, {"TURNLOG_AGENT_NAME": "x"}).items():
        monkeypatch.setenv(name, value)

    streams = load_streams_settings()
    api = load_api_settings()
    gateway = load_gateway_settings()

    for service in (streams, api, gateway):
        assert service.kafka_bootstrap == "127.0.0.1:29092"
        assert service.topic_prefix == "p."
    for service in (streams, api):
        assert service.postgres_dsn.get_secret_value() == settings.postgres_dsn
        assert service.analytics_url == "http://127.0.0.1:8123"
    assert streams.metrics_port == 19465
    assert api.port == 18000
    assert api.host == "127.0.0.1"
    assert api.agent_name == gateway.agent_name == "x"
    assert api.livekit_url == gateway.livekit_url == "ws://127.0.0.1:17880"
    assert gateway.metrics_port == 19464
    assert gateway.health_port == 18081
    assert gateway.max_jobs is not None
    assert gateway.spool_dir == settings.state_dir / "spool"


def test_service_ports_do_not_collide(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    ports = [spec.port for spec in service_specs(settings)]
    ports += [settings.kafka_port, settings.kafka_controller_port, settings.postgres_port,
              settings.livekit_udp_port,
              settings.livekit_port, settings.gateway_metrics_port,
              settings.streams_query_port]  # fmt: skip
    assert len(ports) == len(set(ports))


def test_each_projection_is_its_own_service_with_its_own_metrics_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNLOG_STREAMS_CLICKHOUSE_METRICS_PORT", "19467")
    monkeypatch.setenv("TURNLOG_STREAMS_DERIVED_METRICS_PORT", "19468")
    settings = StackSettings(state_dir=tmp_path / "state", streams_query_port=19466)
    specs = {spec.name: spec for spec in service_specs(settings)}
    assert list(specs) == ["streams-postgres", "streams-clickhouse", "streams-derived",
                           "api", "gateway"]  # fmt: skip
    expected_ports = {"postgres": 9465, "clickhouse": 19467, "derived": 19468}
    for projection, port in expected_ports.items():
        spec = specs[f"streams-{projection}"]
        keys = ("--projection", "keys") if projection == "postgres" else ()  # same process
        assert spec.argv[1:] == ("-m", "turnlog.streams", "worker", "--projection", projection,
                                 *keys)  # fmt: skip
        assert spec.port == port
        assert spec.health_url == f"http://127.0.0.1:{port}/metrics"
        env = Service(spec, settings, service_environment(settings)).env
        assert env["TURNLOG_STREAMS_METRICS_PORT"] == str(port)
        # the query endpoint goes with the chDB folder, to the ClickHouse projection only
        assert env.get("TURNLOG_STREAMS_QUERY_PORT") == (
            "19466" if projection == "clickhouse" else None
        )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("offline", "offline", "offline")),
        ({"OPENAI_API_KEY": "sk-x"}, ("openai", "openai", "openai")),
        ({"DEEPGRAM_API_KEY": "dg"}, ("deepgram", "offline", "offline")),
        ({"OPENAI_API_KEY": "sk-x", "DEEPGRAM_API_KEY": "dg"}, ("deepgram", "openai", "openai")),
        ({"OPENAI_API_KEY": "sk-x", "TURNLOG_TTS": "offline"}, ("openai", "openai", "offline")),
        ({"OPENAI_API_KEY": "  "}, ("offline", "offline", "offline")),
    ],
)
def test_providers_are_offline_unless_a_cloud_key_is_set(
    environ: dict[str, str], expected: tuple[str, str, str]
) -> None:
    choice = provider_choice(environ)
    assert (choice["TURNLOG_STT"], choice["TURNLOG_LLM"], choice["TURNLOG_TTS"]) == expected
