"""The README names every port variable, so two platforms can share one machine."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from turnlog.agent_gateway.config import GatewaySettings
from turnlog.api.settings import ApiSettings
from turnlog.infra.stack.config import REPO_ROOT, StackSettings
from turnlog.streams.config import StreamsSettings

pytestmark = pytest.mark.unit


def port_variables(settings: type[BaseSettings]) -> set[str]:
    """The variables of `settings`' port fields: their alias, else prefix + name."""
    prefix = str(settings.model_config.get("env_prefix") or "")
    names = set()
    for name, field in settings.model_fields.items():
        if name.endswith("_port") or name == "port":
            alias = field.validation_alias
            names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def test_every_port_variable_is_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    services = (StackSettings, StreamsSettings, ApiSettings, GatewaySettings)
    variables = set().union(*(port_variables(s) for s in services))
    assert {"TURNLOG_KAFKA_CONTROLLER_PORT", "TURNLOG_STREAMS_QUERY_PORT",
            "TURNLOG_API_PORT", "TURNLOG_GATEWAY_HEALTH_PORT"} <= variables  # fmt: skip
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert not missing, f"port variables the README does not name: {missing}"
