"""Settings of the streams worker, from environment variables (`TURNLOG_*`).

Every default works with the local stack (`turnlog stack up`), and every listener binds
loopback. Loaded by `load_streams_settings()`, never at import. The PostgreSQL DSN is a
secret: it is a `SecretStr`, and logs show it through `redact_url`.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnlog.projections.settings import ClickHouseUrl, PostgresDsn
from turnlog.schemas.topics import (
    DERIVED_STATE_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    KEYS_TOPIC,
    SESSIONS_TOPIC,
    TURNS_TOPIC,
)
from turnlog.streams.errors import ConfigurationError

REPO_ROOT: Final = Path(__file__).resolve().parents[1]


class StreamsSettings(BaseSettings):
    """Everything the streams worker reads from the environment."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", min_length=1, validation_alias="TURNLOG_KAFKA_BOOTSTRAP"
    )
    """Kafka bootstrap servers, `host:port[,host:port...]`."""
    topic_prefix: str = Field("", validation_alias="TURNLOG_TOPIC_PREFIX")
    """Prepended to every topic name (tests use it to isolate themselves)."""
    postgres_dsn: PostgresDsn = Field(
        SecretStr("postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"),
        validation_alias="TURNLOG_POSTGRES_DSN",
    )
    """PostgreSQL connection URL of the read models (a secret: logged redacted)."""
    postgres_schema: str = Field("public", min_length=1, validation_alias="TURNLOG_POSTGRES_SCHEMA")
    """Schema that holds the read models (migrated by `turnlog stack up`)."""
    clickhouse_url: ClickHouseUrl | None = Field(
        None, validation_alias="TURNLOG_CLICKHOUSE_URL", repr=False
    )
    """`chdb:///abs/path` (embedded, owned by this worker) or `http(s)://host:8123`; default:
    embedded at `<repo>/.turnlog/clickhouse`, as the stack launcher has it."""
    clickhouse_database: str = Field(
        "turnlog", min_length=1, validation_alias="TURNLOG_CLICKHOUSE_DATABASE"
    )
    """ClickHouse database of the analytics tables."""
    retention_analytics_days: int | None = Field(
        None, ge=1, validation_alias="TURNLOG_RETENTION_ANALYTICS_DAYS"
    )
    """Retention of the analytics tables: a TTL on each table's event time (ClickHouse drops
    expired rows in its background merges); unset: kept."""
    consumer_group: str = Field(
        "turnlog-streams", min_length=1, validation_alias="TURNLOG_STREAMS_CONSUMER_GROUP"
    )
    """Base of the consumer groups: each projection is its own group,
    `<base>-postgres`, `<base>-clickhouse`, `<base>-derived` (the PostgreSQL group is
    also the consumer name of the offsets it stores with its rows)."""
    batch_size: int = Field(10_000, ge=1, le=100_000, validation_alias="TURNLOG_STREAMS_BATCH_SIZE")
    """Most events per batch. Under load batches grow to this by themselves (the next one
    is fetched while the current one is applied)."""
    batch_within: float = Field(0.2, gt=0, le=60, validation_alias="TURNLOG_STREAMS_BATCH_WITHIN")
    """Seconds to wait for a first record while nothing has been fetched."""
    metrics_host: str = Field("127.0.0.1", validation_alias="TURNLOG_STREAMS_METRICS_HOST")
    """Address of the Prometheus endpoint (`/metrics`); loopback unless you mean otherwise."""
    metrics_port: int = Field(9465, ge=0, le=65535, validation_alias="TURNLOG_STREAMS_METRICS_PORT")
    """Port of the Prometheus endpoint; 0 disables it."""
    query_host: str = Field("127.0.0.1", validation_alias="TURNLOG_STREAMS_QUERY_HOST")
    """Address of the analysts' query endpoint (embedded chDB only); loopback only for now."""
    query_port: int = Field(9466, ge=0, le=65535, validation_alias="TURNLOG_STREAMS_QUERY_PORT")
    """Port of the analysts' query endpoint; 0 picks a free port (published in the chDB
    folder, as `python -m turnlog.projections.clickhouse query` expects)."""
    query_token: SecretStr | None = Field(None, validation_alias="TURNLOG_STREAMS_QUERY_TOKEN")
    """Bearer token of the query endpoint; default: a fresh one per run, published in the
    chDB folder (mode 0600)."""
    data_dir: Path = Field(
        REPO_ROOT / ".turnlog" / "streams", validation_alias="TURNLOG_STREAMS_DATA_DIR"
    )
    """Faust's data folder."""
    session_timeout: float = Field(
        3.0, ge=1, le=300, validation_alias="TURNLOG_STREAMS_SESSION_TIMEOUT"
    )
    """Seconds without heartbeat after which Kafka gives a dead worker's partitions to
    another member (the broker's `group.min.session.timeout.ms` must allow it; the local
    stack's is 1 s)."""
    instance: str = Field(
        default_factory=socket.gethostname, min_length=1,
        validation_alias="TURNLOG_STREAMS_INSTANCE",
    )  # fmt: skip
    """This process's name among its projections' members, stable across restarts: the
    derived projection's transactional id is `<group>-<instance>`, so a restarted process
    fences the transaction its predecessor left open at once. Default: the host name;
    give each derived process on one host its own."""

    def group(self, projection: str) -> str:
        """The consumer group of `projection`."""
        return f"{self.consumer_group}-{projection}"

    @property
    def analytics_url(self) -> str:
        return self.clickhouse_url or f"chdb://{REPO_ROOT / '.turnlog' / 'clickhouse'}"

    @property
    def events_topic(self) -> str:
        return self.topic_prefix + EVENTS_TOPIC

    @property
    def turns_topic(self) -> str:
        return self.topic_prefix + TURNS_TOPIC

    @property
    def sessions_topic(self) -> str:
        return self.topic_prefix + SESSIONS_TOPIC

    @property
    def dlq_topic(self) -> str:
        return self.topic_prefix + DLQ_TOPIC

    @property
    def derived_state_topic(self) -> str:
        return self.topic_prefix + DERIVED_STATE_TOPIC

    @property
    def keys_topic(self) -> str:
        return self.topic_prefix + KEYS_TOPIC

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic the worker reads or writes."""
        return (self.events_topic, self.turns_topic, self.sessions_topic, self.dlq_topic,
                self.derived_state_topic, self.keys_topic)  # fmt: skip

    def describe(self) -> dict[str, object]:
        """The settings as logs may show them: secrets redacted."""
        return {
            "kafka_bootstrap": self.kafka_bootstrap,
            "topic_prefix": self.topic_prefix,
            "postgres": redact_url(self.postgres_dsn.get_secret_value()),
            "postgres_schema": self.postgres_schema,
            "clickhouse": redact_url(self.analytics_url),
            "clickhouse_database": self.clickhouse_database,
            "consumer_groups": f"{self.consumer_group}-<projection>",
            "session_timeout": self.session_timeout,
            "batch": f"{self.batch_size} within {self.batch_within}s",
            "metrics": f"{self.metrics_host}:{self.metrics_port}",
            "query_endpoint": f"{self.query_host}:{self.query_port}",
        }

    @field_validator("query_host")
    @classmethod
    def _check_query_host(cls, value: str) -> str:
        # The query endpoint (projections.clickhouse.query_endpoint) binds loopback only.
        try:
            loopback = value == "localhost" or ipaddress.ip_address(value).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError("the query endpoint serves loopback only (127.0.0.1)")
        return value


_ENV_NAMES: Final = {
    name: field.validation_alias
    for name, field in StreamsSettings.model_fields.items()
    if isinstance(field.validation_alias, str)
}


def redact_url(url: str) -> str:
    """`url` with its password (and any query string, which may carry one) replaced."""
    parts = urlsplit(url)
    if parts.password is None and not parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:***@{host}"
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def load_streams_settings() -> StreamsSettings:
    """Read the settings from the environment; `ConfigurationError` names every variable
    that is invalid (never its value)."""
    try:
        return StreamsSettings()
    except ValidationError as error:
        problems: list[str] = []
        names: list[str] = []
        for detail in error.errors(include_url=False, include_input=False):
            field = str(detail["loc"][0]) if detail["loc"] else ""
            name = _ENV_NAMES.get(field, field)
            names.append(name)
            problems.append(f"{name}: {detail['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError(
            "invalid streams settings: " + "; ".join(problems), variables=tuple(names)
        ) from None
