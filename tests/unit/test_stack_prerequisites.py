"""A missing prerequisite fails at once, naming it and how to fix it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from turnlog.infra.cli import _redacted
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.errors import PrerequisiteError
from turnlog.infra.stack.kafka import Kafka, java_major_version, min_heap
from turnlog.infra.stack.process import ensure_port_free
from turnlog.projections.clickhouse.store import AnalyticsStoreError, connect

pytestmark = pytest.mark.unit


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH on which no tool is found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_missing_java_is_named(empty_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match="Java is not installed") as info:
        java_major_version()
    assert "openjdk-17" in info.value.fix


def test_missing_maven_is_named_when_jars_are_not_cached(empty_path: Path, tmp_path: Path) -> None:
    kafka = Kafka(StackSettings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache"))
    with pytest.raises(PrerequisiteError, match="Maven is not installed") as info:
        kafka.ensure_jars()
    assert info.value.fix == "apt-get install -y maven"


def test_port_in_use_names_port_and_setting(busy_port: int) -> None:
    with pytest.raises(PrerequisiteError, match=f"127.0.0.1:{busy_port} needed by Kafka") as info:
        ensure_port_free("127.0.0.1", busy_port, owner="Kafka", setting="TURNLOG_KAFKA_PORT")
    assert "TURNLOG_KAFKA_PORT=<port>" in info.value.fix


def test_kafka_start_refuses_a_taken_port(busy_port: int, tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path / "state", kafka_port=busy_port)
    with pytest.raises(PrerequisiteError, match=f"port 127.0.0.1:{busy_port}"):
        Kafka(settings).start()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost", "unsupported ClickHouse URL scheme 'mysql'"),
        ("chdb://relative/path", "needs an absolute path"),
    ],
)
def test_bad_analytics_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(AnalyticsStoreError, match=message):
        connect(url)


def test_min_heap_is_a_quarter() -> None:
    assert min_heap("1g") == "256m"
    assert min_heap("128m") == "64m"


def test_printed_dsn_hides_the_password() -> None:
    assert _redacted("postgresql://turnlog:s3cret@127.0.0.1:15432/turnlog") == (
        "postgresql://turnlog:***@127.0.0.1:15432/turnlog"
    )
