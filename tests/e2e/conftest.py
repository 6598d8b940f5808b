"""The whole platform for one end-to-end test: its own services on the shared stack.

The stack (Kafka, PostgreSQL, LiveKit server) is the shared one of `tests/conftest.py`.
The streams worker, API and agent gateway are started here as the launcher starts them,
but on this test's own topics (prefix), PostgreSQL schema, chDB folder, ports and agent
name, so they neither see nor disturb a platform already running on this machine.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PgSchema, Topics, unique
from turnlog.infra.demo.run import demo_key
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.services import Services
from turnlog.infra.stack.stack import Stack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningPlatform:
    settings: StackSettings
    services: Services
    pg_schema: PgSchema
    topics: Topics
    api_key: str
    agent_name: str
    livekit_log: Path
    """The shared LiveKit server's log."""

    @property
    def logs(self) -> Path:
        return self.settings.logs_dir


@pytest.fixture
def platform(
    stack: Stack, topics: Topics, pg_schema: PgSchema, tmp_path: Path
) -> Iterator[RunningPlatform]:
    state = tmp_path / "state"
    settings = stack.settings.model_copy(update={
        "state_dir": state,
        "topic_prefix": topics.prefix,
        "clickhouse_url": f"chdb://{tmp_path / 'clickhouse'}",
        "api_port": free_port(),
        "streams_metrics_port": free_port(),
        "streams_clickhouse_metrics_port": free_port(),
        "streams_derived_metrics_port": free_port(),
        "streams_query_port": 0,
        "gateway_metrics_port": free_port(),
        "gateway_health_port": free_port(),
    })  # fmt: skip
    agent_name = unique("e2e-tutor-")
    services = Services(settings, {
        "TURNLOG_POSTGRES_SCHEMA": pg_schema.name,
        "TURNLOG_AGENT_NAME": agent_name,
        "TURNLOG_STREAMS_CONSUMER_GROUP": unique("e2e-streams-"),
    })  # fmt: skip
    try:
        services.up(report=lambda line: None)
        key = demo_key(settings, schema=pg_schema.name, path=state / "api-key")
        yield RunningPlatform(settings, services, pg_schema, topics, key, agent_name,
                              stack.settings.logs_dir / "livekit.log")
    finally:
        services.down(report=lambda line: None)


def gateway_samples(platform: RunningPlatform, prefix: str = "") -> dict[str, float]:
    """The gateway endpoint's samples named `prefix...`, summed over their labels."""
    s = platform.settings
    url = f"http://{s.host}:{s.gateway_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals
