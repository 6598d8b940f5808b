"""Settings of the local stack launcher.

Every default works on a fresh checkout: state lives in ``.turnlog/`` at the repository
root (git-ignored), downloads in the user's cache folder, every listener on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnlog.schemas.topics import TopicSpec, topic_specs

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "turnlog"


DEFAULT_STATE_DIR: Final = REPO_ROOT / ".turnlog"
"""The state folder of `make up`'s stack (tests use others)."""


class StackSettings(BaseSettings):
    """Where the local stack keeps its state and which loopback ports it listens on."""

    model_config = SettingsConfigDict(env_prefix="TURNLOG_", extra="ignore", frozen=True)

    state_dir: Path = DEFAULT_STATE_DIR
    """Kafka data, the PostgreSQL cluster, the chDB folder, logs and pid files."""
    retention_log_days: int | None = Field(None, ge=1)
    """TURNLOG_RETENTION_LOG_DAYS: retention of `turnlog.events`; unset: unlimited (the log
    is the source of truth; erasure makes an erased session's copies unreadable anyway)."""
    retention_dlq_days: int | None = Field(30, ge=1)
    """TURNLOG_RETENTION_DLQ_DAYS: retention of the dead-letter topic."""
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Downloaded Kafka jars, shared by every checkout of this user."""
    host: str = "127.0.0.1"
    """Address every listener binds to; loopback unless you mean otherwise."""

    kafka_version: str = "4.3.1"
    """Apache Kafka broker release fetched from Maven Central."""
    kafka_port: int = 19092
    """Broker (PLAINTEXT) port."""
    kafka_controller_port: int = 19093
    """KRaft controller port."""
    kafka_heap: str = "1g"
    """Maximum JVM heap of the broker."""

    postgres_port: int = 15432
    postgres_user: str = "turnlog"
    postgres_password: str = "turnlog"  # noqa: S105 - loopback-only dev cluster; override it
    postgres_db: str = "turnlog"

    livekit_version: str = "v1.13.5"
    """LiveKit server release built once with `go install` (when no `livekit-server` is on
    PATH)."""
    livekit_port: int = 7880
    """LiveKit signalling (HTTP and WebSocket) port."""
    livekit_udp_port: int = 7882
    """LiveKit media (WebRTC over UDP, one muxed port) port."""
    livekit_api_key: str = "devkey"
    """API key of the LiveKit dev server (clients' tokens are signed with it)."""
    livekit_api_secret: str = "secret"  # noqa: S105 - the dev server's well-known secret
    """API secret of the LiveKit dev server; override it when the host is shared."""

    api_port: int = 8000
    """Port of our API (the same variable the API reads)."""
    streams_metrics_port: int = 9465
    """Port of the PostgreSQL projection's streams worker's Prometheus endpoint."""
    streams_clickhouse_metrics_port: int = 9467
    """Port of the ClickHouse projection's streams worker's Prometheus endpoint."""
    streams_derived_metrics_port: int = 9468
    """Port of the derived-topics projection's streams worker's Prometheus endpoint."""
    streams_query_port: int = 9466
    """Port of the analysts' query endpoint (served by the ClickHouse projection's worker,
    which owns the chDB folder)."""
    gateway_metrics_port: int = 9464
    """Port of the agent gateway's Prometheus endpoint."""
    gateway_health_port: int = 8081
    """Port of the agent gateway's health endpoint (LiveKit's worker HTTP server)."""

    clickhouse_url: str | None = None
    """``chdb:///path`` (embedded) or ``http(s)://host:8123`` (server); default: embedded
    at ``<state_dir>/clickhouse``."""
    clickhouse_database: str = "turnlog"
    """ClickHouse database that holds the analytics tables."""
    topic_prefix: str = ""
    """Prepended to every topic name (tests use it to isolate themselves)."""

    start_timeout: float = 60.0
    """Seconds a component may take to become ready before start fails."""

    def topic_specs(self) -> list[TopicSpec]:
        """The platform's topics with this stack's prefix and retention periods."""
        day = 24 * 3600 * 1000
        return topic_specs(
            self.topic_prefix,
            log_retention_ms=self.retention_log_days * day if self.retention_log_days else None,
            dlq_retention_ms=self.retention_dlq_days * day if self.retention_dlq_days else None,
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def postgres_dsn(self) -> str:
        return (
            f"postgresql://{self.postgres_user}:{self.postgres_password}"
            f"@{self.host}:{self.postgres_port}/{self.postgres_db}"
        )

    @property
    def livekit_url(self) -> str:
        return f"ws://{self.host}:{self.livekit_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def analytics_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.state_dir / 'clickhouse'}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"


def load_settings() -> StackSettings:
    """Read the settings from the environment (``TURNLOG_*``)."""
    return StackSettings()
