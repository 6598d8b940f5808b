"""The streams worker's app and CLI as built, never started: which projections it runs,
with which groups, and what it refuses (no services: nothing may connect)."""

from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

from turnlog.streams.app import PROJECTIONS, create_app, make_projector
from turnlog.streams.cli import cli
from turnlog.streams.config import StreamsSettings, load_streams_settings
from turnlog.streams.errors import ConfigurationError
from turnlog.streams.postgres_projector import PostgresProjector

pytestmark = pytest.mark.unit

NOWHERE = "127.0.0.1:1"
"""A bootstrap nothing listens on: a connection attempt would fail, not hang."""


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> StreamsSettings:
    monkeypatch.setenv("TURNLOG_TOPIC_PREFIX", "lazy.")
    monkeypatch.setenv("TURNLOG_KAFKA_BOOTSTRAP", NOWHERE)
    monkeypatch.setenv("TURNLOG_STREAMS_CONSUMER_GROUP", "base")
    return load_streams_settings()


def test_the_postgres_projector_has_its_own_group_and_is_not_started(
    settings: StreamsSettings,
) -> None:
    projector = make_projector("postgres", settings)
    assert isinstance(projector, PostgresProjector)
    assert (projector.name, projector.group) == ("postgres", "base-postgres")
    assert projector.dead_letters_decode is True
    assert projector.dlq_topic == "lazy.turnlog.events.dlq"
    assert projector.schema == settings.postgres_schema
    assert projector._projection is None  # connects only when started


def test_an_app_of_one_projection_is_built_without_connecting(settings: StreamsSettings) -> None:
    app = create_app(settings, ("postgres", "postgres"))
    runtime = app.runtime
    assert [engine.name for engine in runtime.engines] == ["postgres"]
    engine = runtime.engines[0]
    assert engine.projector.group == "base-postgres"
    assert engine._consumer is None
    assert not engine.consuming.is_set()
    assert runtime.delivery._producer is None
    assert runtime.delivery.bootstrap == NOWHERE
    conf = app.conf
    assert (conf.web_enabled, conf.topic_allow_declare, conf.topic_disable_leader) == (
        False, False, True
    )  # fmt: skip
    assert conf.web_bind == "127.0.0.1"
    # Faust is the service container only: its consumer, producer and agents left out
    assert app.boot_strategy.enable_kafka_consumer is False
    assert app.boot_strategy.enable_kafka_producer is False
    assert not app.agents


@pytest.mark.parametrize("projections", [("spark",), ("postgres", "spark"), ()])
def test_an_unknown_projection_is_refused_by_the_options_name(
    settings: StreamsSettings, projections: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        create_app(settings, projections)
    assert refused.value.variables == ("--projection",)
    assert "choose from postgres, clickhouse, derived" in str(refused.value)


def test_make_projector_refuses_an_unknown_name(settings: StreamsSettings) -> None:
    with pytest.raises(ConfigurationError, match="'spark'") as refused:
        make_projector("spark", settings)
    assert refused.value.variables == ("--projection",)


def test_the_worker_command_exits_2_on_an_unknown_projection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNLOG_KAFKA_BOOTSTRAP", NOWHERE)
    result = CliRunner().invoke(cli, ["worker", "--projection", "spark"])
    assert result.exit_code == 2
    assert "unknown projection ['spark']" in result.output


def test_the_app_is_built_lazily_for_faust_cli_without_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNLOG_TOPIC_PREFIX", "lazy.")
    monkeypatch.setenv("TURNLOG_KAFKA_BOOTSTRAP", NOWHERE)
    monkeypatch.delenv("TURNLOG_STREAMS_CONSUMER_GROUP", raising=False)
    module = importlib.import_module("turnlog.streams.app")
    monkeypatch.delitem(module.__dict__, "app", raising=False)
    app = module.app  # what `faust -A turnlog.streams.app` reads
    assert module.__dict__["app"] is app  # built once
    runtime = app.runtime
    assert [engine.name for engine in runtime.engines] == list(PROJECTIONS)
    assert [engine.projector.group for engine in runtime.engines] == [
        f"turnlog-streams-{name}" for name in PROJECTIONS
    ]
    assert runtime.settings.events_topic == "lazy.turnlog.events"
    assert all(engine._consumer is None for engine in runtime.engines)
    assert runtime.delivery._producer is None
    assert app.boot_strategy.enable_kafka_consumer is False
