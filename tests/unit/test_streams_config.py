"""Streams settings and metrics (no services)."""

from __future__ import annotations

import os
import socket

import pytest
from prometheus_client import CollectorRegistry

from turnlog.streams.config import load_streams_settings, redact_url
from turnlog.streams.errors import ConfigurationError
from turnlog.streams.metrics import FRESHNESS_SAMPLES, KNOWN_REASONS, StreamsMetrics
from turnlog.streams.projector import Applied, DecodedBatch
from turnlog.streams.records import DeadLetter, RawRecord

pytestmark = pytest.mark.unit

SECRET_DSN = "postgresql://turnlog:s3cret-pw@db.internal:5432/turnlog?sslpassword=also-secret"


def test_the_defaults_work_for_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("TURNLOG_")]:
        monkeypatch.delenv(name)
    settings = load_streams_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.events_topic == "turnlog.events"
    assert settings.analytics_url.startswith("chdb:///")
    assert settings.analytics_url.endswith("/.turnlog/clickhouse")
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9465)
    assert (settings.query_host, settings.query_port) == ("127.0.0.1", 9466)
    assert (settings.batch_size, settings.batch_within) == (10_000, 0.2)
    assert settings.session_timeout == 3.0
    assert settings.instance == socket.gethostname()  # stable across restarts


def test_each_projection_is_a_consumer_group_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_STREAMS_CONSUMER_GROUP", "g1")
    monkeypatch.setenv("TURNLOG_STREAMS_INSTANCE", "worker-a")
    settings = load_streams_settings()
    groups = [settings.group(p) for p in ("postgres", "clickhouse", "derived")]
    assert groups == ["g1-postgres", "g1-clickhouse", "g1-derived"]
    assert settings.instance == "worker-a"
    assert settings.describe()["consumer_groups"] == "g1-<projection>"


@pytest.mark.parametrize("seconds", ["1", "2.5", "300"])
def test_a_session_timeout_within_bounds_is_taken(
    monkeypatch: pytest.MonkeyPatch, seconds: str
) -> None:
    monkeypatch.setenv("TURNLOG_STREAMS_SESSION_TIMEOUT", seconds)
    settings = load_streams_settings()
    assert settings.session_timeout == float(seconds)
    assert settings.describe()["session_timeout"] == float(seconds)


def test_the_dsn_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_POSTGRES_DSN", SECRET_DSN)
    monkeypatch.setenv("TURNLOG_TOPIC_PREFIX", "t1.")
    settings = load_streams_settings()
    monkeypatch.setenv("TURNLOG_STREAMS_QUERY_TOKEN", "tok3n-secret")
    monkeypatch.setenv("TURNLOG_CLICKHOUSE_URL", "https://analyst:ch-secret@ch.internal:8443")
    settings = load_streams_settings()
    shown = f"{settings!r} {settings} {settings.describe()}"
    for secret in ("s3cret-pw", "also-secret", "tok3n-secret"):
        assert secret not in shown
    # the ClickHouse URL is a plain string: only `describe()` (what logs show) redacts it
    assert "ch-secret" not in str(settings.describe())
    assert settings.describe()["clickhouse"] == "https://analyst:***@ch.internal:8443"
    assert (
        settings.describe()["postgres"] == "postgresql://turnlog:***@db.internal:5432/turnlog?***"
    )
    assert settings.dlq_topic == "t1.turnlog.events.dlq"
    assert redact_url("chdb:///tmp/x") == "chdb:///tmp/x"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TURNLOG_POSTGRES_DSN", "mysql://x"),
        ("TURNLOG_STREAMS_BATCH_SIZE", "0"),
        ("TURNLOG_STREAMS_QUERY_HOST", "0.0.0.0"),
        ("TURNLOG_CLICKHOUSE_URL", "chdb://relative/path"),
        ("TURNLOG_STREAMS_SESSION_TIMEOUT", "0.5"),
        ("TURNLOG_STREAMS_SESSION_TIMEOUT", "301"),
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


@pytest.mark.parametrize("variable", ["TURNLOG_STREAMS_INSTANCE", "TURNLOG_STREAMS_CONSUMER_GROUP"])
def test_an_empty_name_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "")
    with pytest.raises(ConfigurationError) as failure:
        load_streams_settings()
    assert failure.value.variables == (variable,)
    assert variable in str(failure.value)


def raw(offset: int) -> RawRecord:
    return RawRecord("t", 0, offset, None, b"{")


def batch_of(size: int, letters: list[DeadLetter]) -> DecodedBatch:
    return DecodedBatch(records=[raw(i) for i in range(size)], dead_letters=letters)


def test_metrics_count_a_batch_under_its_projection() -> None:
    registry = CollectorRegistry()
    metrics = StreamsMetrics(registry)
    decode_letters = [DeadLetter(raw(0), "malformed", "E", "m", "decode"),
                      DeadLetter(raw(1), "weird", "E", "m", "decode")]  # fmt: skip
    batch = batch_of(10, decode_letters)
    applied = Applied(
        events=7, duplicates=1, outputs=3, freshness=[0.5, 1.5],
        dead_letters=[DeadLetter(raw(2), "unhandled_type", "E", "m", "postgres")],
    )  # fmt: skip
    metrics.record("postgres", batch, applied, seconds=0.02, decode_letters=True)
    metrics.record("clickhouse", batch, Applied(events=8), seconds=0.01, decode_letters=False)

    def value(name: str, projection: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"projection": projection, **labels})

    assert value("turnlog_streams_records_consumed_total", "postgres") == 10
    assert value("turnlog_streams_events_processed_total", "postgres") == 7
    assert value("turnlog_streams_events_processed_total", "clickhouse") == 8
    assert value("turnlog_streams_duplicates_skipped_total", "postgres") == 1
    assert value("turnlog_streams_derived_records_total", "postgres") == 3
    dead = "turnlog_streams_dead_lettered_total"
    assert value(dead, "postgres", reason="malformed") == 1
    assert value(dead, "postgres", reason="other") == 1
    assert value(dead, "postgres", reason="unhandled_type") == 1
    # decode dead letters belong to the one projection that dead-letters them
    assert value(dead, "clickhouse", reason="malformed") is None
    assert value("turnlog_streams_batch_size_sum", "postgres") == 10
    assert value("turnlog_streams_batch_seconds_sum", "postgres") == pytest.approx(0.02)
    assert value("turnlog_streams_freshness_seconds_count", "postgres") == 2
    assert value("turnlog_streams_freshness_seconds_sum", "postgres") == 2.0
    assert value("turnlog_streams_freshness_seconds_count", "clickhouse") is None


@pytest.mark.parametrize("events", [1, 64, 128, 640])
def test_freshness_is_observed_for_at_most_64_events_a_batch(events: int) -> None:
    registry = CollectorRegistry()
    metrics = StreamsMetrics(registry)
    freshness = [float(i) for i in range(events)]
    applied = Applied(events=events, freshness=freshness)
    metrics.record("postgres", batch_of(events, []), applied, seconds=0.1, decode_letters=True)
    observed = registry.get_sample_value("turnlog_streams_freshness_seconds_count",
                                         {"projection": "postgres"})  # fmt: skip
    assert observed == min(events, FRESHNESS_SAMPLES)


@pytest.mark.parametrize("events", [65, 100, 130, 10_000])
def test_freshness_of_a_batch_between_multiples_of_64_stays_within_64(events: int) -> None:
    registry = CollectorRegistry()
    metrics = StreamsMetrics(registry)
    applied = Applied(events=events, freshness=[0.1] * events)
    metrics.record("postgres", batch_of(events, []), applied, seconds=0.1, decode_letters=True)
    observed = registry.get_sample_value("turnlog_streams_freshness_seconds_count",
                                         {"projection": "postgres"})  # fmt: skip
    assert observed is not None
    assert observed <= FRESHNESS_SAMPLES


def test_the_lag_gauge_keeps_each_projections_partitions_apart() -> None:
    registry = CollectorRegistry()
    metrics = StreamsMetrics(registry)

    def lag(projection: str, partition: int) -> float | None:
        return registry.get_sample_value(
            "turnlog_streams_consumer_lag",
            {"projection": projection, "partition": str(partition)},
        )  # fmt: skip

    metrics.set_lag("postgres", {0: 5, 1: 0})
    metrics.set_lag("clickhouse", {0: 9})
    metrics.set_lag("postgres", {1: 3})  # partition 0 went to another worker
    assert lag("postgres", 0) is None
    assert lag("postgres", 1) == 3
    assert lag("clickhouse", 0) == 9
    metrics.set_lag("clickhouse", {})
    assert lag("clickhouse", 0) is None
    assert lag("postgres", 1) == 3


def test_a_started_projection_shows_every_series_at_zero() -> None:
    registry = CollectorRegistry()
    metrics = StreamsMetrics(registry)
    metrics.start("derived")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"projection": "derived", **labels})

    dead = "turnlog_streams_dead_lettered_total"
    for reason in (*KNOWN_REASONS, "other"):
        assert value(dead, reason=reason) == 0.0
    assert value(dead, reason="weird") is None  # unknown reasons are counted as "other"
    for name in ("records_consumed", "events_processed", "duplicates_skipped",
                 "derived_records", "batch_failures"):  # fmt: skip
        assert value(f"turnlog_streams_{name}_total") == 0.0
    assert value("turnlog_streams_freshness_seconds_count") == 0.0
    assert value("turnlog_streams_waiting") == 0.0
    assert registry.get_sample_value(dead, {"projection": "postgres", "reason": "other"}) is None
