"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine.

The compose file parses; ports bind the loopback default and do not collide; every service
has a health check; state lives in named volumes; the environment of our services names
only settings our services read, and with it (defaults filled in as compose would) each
service's settings load; the services use the ClickHouse server; the Dockerfile installs
what pyproject.toml declares; .env.example lists every variable the compose file uses.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from turnlog.agent_gateway.config import GatewaySettings, load_gateway_settings
from turnlog.agent_gateway.providers.settings import ProviderSettings, load_provider_settings
from turnlog.api.settings import ApiSettings, load_api_settings
from turnlog.infra.provision import ProvisionSettings
from turnlog.streams.config import StreamsSettings, load_streams_settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OURS = ("init", "streams", "api", "gateway")
INFRASTRUCTURE = ("kafka", "postgres", "clickhouse", "livekit", "prometheus", "grafana")
_VARIABLE = re.compile(r"(?<!\$)\$\{(\w+)(?::?-([^}]*))?\}")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if line and not line.startswith("#"))  # fmt: skip
    return {name: value for name, value in pairs}


def interpolate(value: str, env: dict[str, str]) -> str:
    """What compose makes of `${NAME:-default}` with `env` as the .env file."""
    resolved = _VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    return resolved.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {name: interpolate(str(value), env_example()) for name, value in env.items()}


def names_read_by(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix") or "")
    names = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias or field.alias
        names.add(alias if isinstance(alias, str) else (prefix + field_name).upper())
    return names


def test_the_platform_is_all_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*OURS, *INFRASTRUCTURE}
    assert compose["services"]["postgres"]["image"] == "postgres:16"
    assert "KRaft" not in compose["services"]["kafka"]["environment"]  # configured, not named
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == (
        "broker,controller"
    )
    assert compose["services"]["livekit"]["image"].startswith("livekit/livekit-server:v1.13.5")
    assert compose["services"]["clickhouse"]["image"].startswith("clickhouse/clickhouse-server")


def test_published_ports_bind_loopback_by_default_and_do_not_collide(
    compose: dict[str, Any],
) -> None:
    published: list[tuple[str, str]] = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host, host_port, rest = str(port).rsplit(":", 2)
            assert host == "${TURNLOG_BIND:-127.0.0.1}", f"{name}: {port}"
            protocol = rest.split("/", 1)[1] if "/" in rest else "tcp"
            published.append((host_port, protocol))
        if "network_mode" in service:
            assert "ports" not in service, name  # published by the service it shares
    assert len(published) == len(set(published))
    assert env_example()["TURNLOG_BIND"] == "127.0.0.1"


def test_every_long_running_service_is_health_checked(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "init":
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"], name


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = str(mount).split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared
    for stateful in ("kafka", "postgres", "clickhouse", "streams", "gateway", "prometheus",
                     "grafana"):  # fmt: skip
        assert compose["services"][stateful].get("volumes"), stateful


@pytest.mark.parametrize(
    ("service", "readers"),
    [
        ("init", (ProvisionSettings,)),
        ("streams", (StreamsSettings,)),
        ("api", (ApiSettings,)),
        ("gateway", (GatewaySettings, ProviderSettings)),
    ],
)
def test_our_services_get_only_settings_they_read(
    compose: dict[str, Any], service: str, readers: tuple[type[BaseSettings], ...]
) -> None:
    known = set().union(*(names_read_by(r) for r in readers))
    unknown = set(environment(compose["services"][service])) - known
    assert not unknown, f"{service} is given settings nothing reads: {sorted(unknown)}"


def test_with_that_environment_every_service_loads_its_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    for name, load in (("streams", load_streams_settings), ("api", load_api_settings),
                       ("gateway", load_gateway_settings), ("gateway", load_provider_settings),
                       ("init", ProvisionSettings)):  # fmt: skip
        with monkeypatch.context() as patch:
            for variable, value in environment(services[name]).items():
                patch.setenv(variable, value)
            loaded = load()
        url = getattr(loaded, "clickhouse_url", None)
        if url is not None:  # our services use the ClickHouse server, not chDB
            assert re.fullmatch(r"http://\w+:[^@]+@clickhouse:8123", url), name
        if hasattr(loaded, "kafka_bootstrap"):
            assert loaded.kafka_bootstrap == "kafka:29092"


def test_env_example_lists_every_variable_the_compose_file_uses() -> None:
    used = set(_VARIABLE.findall((ROOT / "docker-compose.yml").read_text()))
    assert {name for name, _ in used} == set(env_example())


def test_the_dockerfile_installs_what_pyproject_declares() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    python = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.MULTILINE)
    assert python is not None
    assert project["project"]["requires-python"] == f">={python.group(1)},<3.12"
    assert "COPY pyproject.toml" in dockerfile
    assert re.search(r"pip install( [^\n]*)? \"?\.(\[[a-z,]+\])?\"?(\s|$)", dockerfile)
    assert "==" not in dockerfile  # versions come from pyproject.toml only
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["turnlog*"]
    # turnlog/ holds the public module and one link per folder it installs
    linked = [p.name for p in (ROOT / "turnlog").iterdir() if p.is_symlink()]
    assert linked
    for top in ["turnlog", *linked]:
        assert f"COPY {top} ./{top}" in dockerfile, top
    apt = re.search(r"apt-get install -y --no-install-recommends ([^\n\\]+)", dockerfile)
    assert apt is not None
    install_sh = (ROOT / "infra" / "install.sh").read_text()
    for package in apt.group(1).split():
        assert f"missing+=({package})" in install_sh, package


def test_prometheus_scrapes_our_services_where_compose_runs_them(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    services = compose["services"]
    for job in config["scrape_configs"]:
        host, port = job["static_configs"][0]["targets"][0].split(":")
        owner = services[host]
        exposes = {str(p).rsplit(":", 1)[1].split("/")[0] for p in owner.get("ports", [])}
        assert port in exposes, job["job_name"]


def test_the_image_builds_the_console_from_its_lock_file_and_the_api_serves_it() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    node = re.search(r"^FROM node:(\d+)[^\n]* AS console$", dockerfile, re.MULTILINE)
    assert node is not None
    assert int(node.group(1)) >= 18
    assert "COPY console/package.json console/package-lock.json ./console/" in dockerfile
    assert "npm ci" in dockerfile
    assert "npm install" not in dockerfile
    assert "COPY schemas/jsonschema ./schemas/jsonschema" in dockerfile  # types checked at build
    copied = re.search(r"^COPY --from=console /src/console/dist (\S+)$", dockerfile, re.MULTILINE)
    assert copied is not None
    assert f"TURNLOG_API_CONSOLE_DIR={copied.group(1)}" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"console/node_modules", "console/dist"} <= set(ignored)
