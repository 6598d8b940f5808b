"""Streams settings, the write journal and the metrics (no services)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.test_streams_support import all_events
from turnlog.projections.records import SourceRecord
from turnlog.streams.config import load_streams_settings, redact_url
from turnlog.streams.errors import ConfigurationError
from turnlog.streams.journal import WriteJournal
from turnlog.streams.metrics import StreamsMetrics
from turnlog.streams.processor import BatchOutcome
from turnlog.streams.records import DeadLetter, OutRecord, RawRecord

pytestmark = pytest.mark.unit

SECRET_DSN = "postgresql://turnlog:s3cret-pw@db.internal:5432/turnlog?sslpassword=also-secret"


def test_the_defaults_work_for_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("TURNLOG_")]:
        monkeypatch.delenv(name)
    settings = load_streams_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.events_topic == "turnlog.events"
    assert settings.analytics_url.startswith("chdb:///")
    assert settings.analytics_url.endswith(
        "/.turnlog/clickhouse"
    )
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9465)
    assert (settings.query_host, settings.query_port) == ("127.0.0.1", 9466)
    assert (settings.batch_size, settings.batch_within) == (10_000, 0.2)


def test_the_dsn_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_POSTGRES_DSN", SECRET_DSN)
    monkeypatch.setenv("TURNLOG_TOPIC_PREFIX", "t1.")
    settings = load_streams_settings()
    shown = f"{settings!r} {settings} {settings.describe()}"
    assert "s3cret-pw" not in shown
    assert "also-secret" not in shown
    assert settings.describe()["postgres"] == "postgresql://turnlog:***@db.internal:5432/turnlog?***"
    assert settings.dlq_topic == "t1.turnlog.events.dlq"
    assert redact_url("chdb:///tmp/x") == "chdb:///tmp/x"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TURNLOG_POSTGRES_DSN", "mysql://x"),
        ("TURNLOG_STREAMS_BATCH_SIZE", "0"),
        ("TURNLOG_STREAMS_QUERY_HOST", "0.0.0.0"),
        ("TURNLOG_CLICKHOUSE_URL", "chdb://relative/path"),
    ],
)
def test_an_invalid_setting_names_its_variable_not_its_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as failure:
        load_streams_settings()
    assert failure.value.variables == (variable,)
    assert variable in str(failure.value)
    assert value not in str(failure.value)


def test_the_journal_keeps_one_pending_write(tmp_path: Path) -> None:
    events = all_events()[:6]
    offsets = [3, 4, 5, 9, 10, 20]
    records = [SourceRecord("t", 2, o, e) for o, e in zip(offsets, events, strict=True)]
    journal = WriteJournal(tmp_path / "j.json", database="db1")
    assert journal.pending() is None
    journal.begin(records)
    pending = journal.pending()
    assert pending is not None
    assert pending.offsets == {("t", 2): [(3, 5), (9, 10), (20, 20)]}
    assert pending.offset_set("t", 2) == set(offsets)
    assert WriteJournal(tmp_path / "j.json", database="other").pending() is None
    journal.done()
    assert journal.pending() is None


def test_metrics_count_a_batch() -> None:
    registry = CollectorRegistry()
    metrics = StreamsMetrics(registry)
    raw = RawRecord("t", 0, 0, None, b"{")
    outcome = BatchOutcome(
        consumed=10, applied=7, duplicates=1,
        dead_letters=[DeadLetter(raw, "malformed", "E", "m", "decode"),
                      DeadLetter(raw, "weird", "E", "m", "decode")],
        outputs=[OutRecord("p.turnlog.turns", b"k", b"v"), OutRecord("p.dlq", b"k", b"v")],
        sink_seconds={"postgres": 0.01}, freshness={"postgres": [0.5, 1.5]},
    )  # fmt: skip
    metrics.record(outcome, turns_topic="p.turnlog.turns", sessions_topic="p.turnlog.sessions")
    value = registry.get_sample_value
    assert value("turnlog_streams_events_processed_total") == 7
    assert value("turnlog_streams_duplicates_skipped_total") == 1
    assert value("turnlog_streams_dead_lettered_total", {"reason": "malformed"}) == 1
    assert value("turnlog_streams_dead_lettered_total", {"reason": "other"}) == 1
    assert value("turnlog_streams_derived_records_total", {"topic": "turns"}) == 1
    assert value("turnlog_streams_batch_size_sum") == 10
    assert value("turnlog_streams_freshness_seconds_count", {"sink": "postgres"}) == 2
    metrics.set_lag({0: 5, 1: 0})
    metrics.set_lag({1: 3})
    assert value("turnlog_streams_consumer_lag", {"partition": "0"}) is None
    assert value("turnlog_streams_consumer_lag", {"partition": "1"}) == 3


def test_the_app_is_built_lazily_for_faust_cli_without_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    monkeypatch.setenv("TURNLOG_TOPIC_PREFIX", "lazy.")
    monkeypatch.setenv("TURNLOG_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens there
    module = importlib.import_module("turnlog.streams.app")
    monkeypatch.delitem(module.__dict__, "app", raising=False)
    app = module.app  # what `faust -A turnlog.streams.app` reads
    conf = app.conf
    assert str(conf.processing_guarantee.value) == "at_least_once"
    assert (conf.web_enabled, conf.topic_allow_declare, conf.topic_disable_leader) == (
        False, False, True
    )
    assert conf.web_bind == "127.0.0.1"
    assert conf.producer_max_request_size > 8 * 1024 * 1024
    assert app.runtime.settings.events_topic == "lazy.turnlog.events"
    # the default engine: the batch engine as a service, Faust's consumer left out
    assert app.runtime.settings.engine == "batch"
    assert app.engine is not None
    assert app.engine.settings.events_topic == "lazy.turnlog.events"
    assert not app.agents
    assert app.boot_strategy.enable_kafka_consumer is False


def test_the_faust_engine_is_an_agent_over_the_events_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from turnlog.streams.app import create_app

    monkeypatch.setenv("TURNLOG_TOPIC_PREFIX", "lazy.")
    monkeypatch.setenv("TURNLOG_STREAMS_ENGINE", "faust")
    app = create_app(load_streams_settings())
    assert app.engine is None
    assert [t for agent in app.agents.values() for t in agent.channel.topics] == [
        "lazy.turnlog.events"
    ]
    assert app.boot_strategy.enable_kafka_consumer is not False


def test_an_unknown_engine_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_STREAMS_ENGINE", "spark")
    with pytest.raises(ConfigurationError) as raised:
        load_streams_settings()
    assert raised.value.variables == ("TURNLOG_STREAMS_ENGINE",)
    assert "spark" not in str(raised.value)
