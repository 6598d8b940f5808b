"""Settings of the API service, from environment variables: one typed object.

LiveKit's variables keep LiveKit's names; ours start with `TURNLOG_`, and the ones the
streams worker and the agent gateway also read have the same names and defaults there.
Every default works with the local stack, every listener binds loopback. Loaded by
`load_api_settings()`, never at import. Secrets (the LiveKit API secret, the PostgreSQL
DSN) are `SecretStr`: never logged, never in a response.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnlog.api.errors import ConfigurationError
from turnlog.api.ratelimit import storage_scheme_problem
from turnlog.projections.settings import ClickHouseUrl, PostgresDsn
from turnlog.schemas.topics import EVENTS_TOPIC

REPO_ROOT: Final = Path(__file__).resolve().parents[1]

_PLACEHOLDERS: Final = frozenset(
    {"changeme", "change-me", "change_me", "placeholder", "replaceme", "replace-me", "todo"}
)
_URL_SCHEMES: Final = ("ws://", "wss://", "http://", "https://")
DEFAULT_DSN: Final = "postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"


class ApiSettings(BaseSettings):
    """Everything the API reads from the environment."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    host: str = Field("127.0.0.1", validation_alias="TURNLOG_API_HOST")
    """Address `python -m turnlog.api` binds to; loopback unless you mean otherwise."""
    port: int = Field(8000, ge=0, le=65535, validation_alias="TURNLOG_API_PORT")
    """Port `python -m turnlog.api` listens on."""

    livekit_url: str = Field("ws://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    """LiveKit server URL, given to clients with their token and used for room admin."""
    livekit_api_key: SecretStr = Field(validation_alias="LIVEKIT_API_KEY")
    """LiveKit API key; required (the dev server's is `devkey`)."""
    livekit_api_secret: SecretStr = Field(validation_alias="LIVEKIT_API_SECRET")
    """LiveKit API secret; required (the dev server's is `secret`). It signs the tokens:
    use 32 bytes or more outside development."""
    agent_name: str = Field("turnlog-tutor", validation_alias="TURNLOG_AGENT_NAME")
    """The agent dispatched into a token's room (the gateway registers under this name);
    empty: no dispatch in the token."""

    postgres_dsn: PostgresDsn = Field(
        SecretStr(DEFAULT_DSN),
        validation_alias="TURNLOG_POSTGRES_DSN",
    )
    """PostgreSQL connection URL of the read models and the API keys (a secret)."""
    postgres_schema: str = Field("public", min_length=1, validation_alias="TURNLOG_POSTGRES_SCHEMA")
    """Schema of the read models, the API keys and the issuance record."""
    postgres_pool_size: int = Field(8, ge=1, le=100, validation_alias="TURNLOG_API_PG_POOL_SIZE")
    """Connections the API keeps to PostgreSQL."""
    clickhouse_url: ClickHouseUrl | None = Field(
        None, validation_alias="TURNLOG_CLICKHOUSE_URL", repr=False
    )
    """`chdb:///abs/path` (read through its owner's query endpoint) or
    `http(s)://host:8123`; default: embedded at `<repo>/.turnlog/clickhouse`."""
    clickhouse_database: str = Field(
        "turnlog", min_length=1, validation_alias="TURNLOG_CLICKHOUSE_DATABASE"
    )
    """ClickHouse database of the analytics tables."""
    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", min_length=1, validation_alias="TURNLOG_KAFKA_BOOTSTRAP"
    )
    """Kafka bootstrap servers, `host:port[,host:port...]` (the live event stream)."""
    topic_prefix: str = Field("", validation_alias="TURNLOG_TOPIC_PREFIX")
    """Prepended to every topic name (tests use it to isolate themselves)."""

    access_log: bool = Field(False, validation_alias="TURNLOG_API_ACCESS_LOG")
    """Whether uvicorn logs every request (the metrics count them either way)."""
    dev_mode: bool = Field(False, validation_alias="TURNLOG_API_DEV_MODE")
    """Development: at start, create an API key with every scope and print it once.
    The API never runs without keys."""
    cors_origins: list[str] = Field(
        default_factory=list, validation_alias="TURNLOG_API_CORS_ORIGINS"
    )
    """Origins a browser may call the API from (JSON list, e.g. `["http://localhost:3000"]`);
    empty: none."""

    console_dir: Path = Field(
        REPO_ROOT / "console" / "dist", validation_alias="TURNLOG_API_CONSOLE_DIR"
    )
    """The built console served at `/` (`make install` builds it)."""
    kek_private_key: Path | None = Field(
        REPO_ROOT / ".turnlog" / "keys" / "kek.pem", validation_alias="TURNLOG_KEK_PRIVATE_KEY"
    )
    """The key-encryption key's private half (PEM): what opens the sealed personal fields
    the API shows. Missing: they read `[sealed]` (erasure still works)."""
    retention_read_models_days: int | None = Field(
        None, ge=1, validation_alias="TURNLOG_RETENTION_READ_MODELS_DAYS"
    )
    """Erase sessions that started longer ago than this (the same path as an erasure
    request, by the API's retention job); unset: keep them."""
    retention_interval_s: float = Field(3600, gt=0, validation_alias="TURNLOG_RETENTION_INTERVAL")
    """Seconds between two runs of the retention job (it also finishes pending erasures)."""
    console_session_ttl_s: int = Field(
        12 * 3600, ge=60, le=30 * 86400, validation_alias="TURNLOG_API_CONSOLE_SESSION_TTL"
    )
    """Lifetime of a console login (its cookie), in seconds."""

    token_ttl_default_s: int = Field(600, ge=1, validation_alias="TURNLOG_TOKEN_TTL_DEFAULT")
    """Lifetime of a LiveKit token when the request names none, in seconds."""
    token_ttl_min_s: int = Field(60, ge=1, validation_alias="TURNLOG_TOKEN_TTL_MIN")
    """Shortest lifetime a request may ask for, in seconds."""
    token_ttl_max_s: int = Field(3600, ge=1, validation_alias="TURNLOG_TOKEN_TTL_MAX")
    """Longest lifetime a request may ask for, in seconds."""
    token_metadata_max_length: int = Field(
        1024, ge=0, le=65536, validation_alias="TURNLOG_TOKEN_METADATA_MAX_LENGTH"
    )
    """Longest participant metadata a token may carry, in characters."""
    token_can_publish_data: bool = Field(True, validation_alias="TURNLOG_TOKEN_PUBLISH_DATA")
    """Whether clients may publish data messages: typed chat (`lk.chat` text streams) to
    the agent needs it; off: microphone audio only (the token response says so)."""

    rate_limit_per_key: int = Field(6000, ge=1, validation_alias="TURNLOG_API_RATE_LIMIT_PER_KEY")
    """Requests an API key (or a console session of it) may make per minute, across routes."""
    rate_limit_per_identity: int = Field(
        10, ge=1, validation_alias="TURNLOG_API_RATE_LIMIT_PER_IDENTITY"
    )
    """Tokens one end-user identity may be given per minute, counted per API key."""
    rate_limit_per_address: int = Field(
        10, ge=1, validation_alias="TURNLOG_API_RATE_LIMIT_PER_ADDRESS"
    )
    """Requests without a credential (console logins) a client address may make per
    minute. Requests with a valid API key are limited per key and identity instead."""
    auth_failures_per_address: int = Field(
        30, ge=1, validation_alias="TURNLOG_API_AUTH_FAILURES_PER_ADDRESS"
    )
    """Requests with a missing or wrong API key or session, and failed logins, a client
    address may make per minute; then it is answered 429 until its window ends (guessing
    keys stays slow)."""
    rate_limit_storage: SecretStr = Field(
        SecretStr("memory://"), validation_alias="TURNLOG_API_RATE_LIMIT_STORAGE"
    )
    """Where the rate limit counters are: `memory://` (this process) or a `limits`
    storage URI shared by every API process, e.g. `redis://host:6379` (needs the
    storage's asyncio client installed, `coredis` for Redis). A secret: it may hold a
    password."""
    live_streams_max: int = Field(1000, ge=1, validation_alias="TURNLOG_API_LIVE_STREAMS_MAX")
    """Live event streams open at once (viewers of the process's one Kafka reader)."""

    analytics_query_timeout_max_s: float = Field(
        30, gt=0, le=300, validation_alias="TURNLOG_API_QUERY_TIMEOUT_MAX"
    )
    """Longest an analyst's SQL may run, in seconds."""
    analytics_query_rows_max: int = Field(
        10_000, ge=1, le=1_000_000, validation_alias="TURNLOG_API_QUERY_ROWS_MAX"
    )
    """Most rows an analyst's SQL returns."""
    live_heartbeat_s: float = Field(15, gt=0, le=300, validation_alias="TURNLOG_API_LIVE_HEARTBEAT")
    """Seconds between keep-alive comments on a quiet live stream."""

    @property
    def analytics_url(self) -> str:
        return self.clickhouse_url or f"chdb://{REPO_ROOT / '.turnlog' / 'clickhouse'}"

    @property
    def events_topic(self) -> str:
        return self.topic_prefix + EVENTS_TOPIC

    def livekit_credentials(self) -> tuple[str, str]:
        """(key, secret)."""
        return self.livekit_api_key.get_secret_value(), self.livekit_api_secret.get_secret_value()

    @field_validator("rate_limit_storage")
    @classmethod
    def _check_rate_limit_storage(cls, value: SecretStr) -> SecretStr:
        problem = storage_scheme_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("livekit_url")
    @classmethod
    def _check_livekit_url(cls, value: str) -> str:
        if not value.startswith(_URL_SCHEMES):
            raise ValueError("must start with ws://, wss://, http:// or https://")
        return value

    @field_validator("livekit_api_key", "livekit_api_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        stripped = value.get_secret_value().strip()
        if not stripped or stripped.lower() in _PLACEHOLDERS or stripped.startswith("<"):
            raise ValueError("is empty or a placeholder")
        return value

    @model_validator(mode="after")
    def _check_ttl_bounds(self) -> Self:
        if not self.token_ttl_min_s <= self.token_ttl_default_s <= self.token_ttl_max_s:
            raise ValueError(
                "TURNLOG_TOKEN_TTL_DEFAULT must lie between TURNLOG_TOKEN_TTL_MIN and "
                "TURNLOG_TOKEN_TTL_MAX"
            )
        return self


_ENV_NAMES: Final = {
    name: field.validation_alias
    for name, field in ApiSettings.model_fields.items()
    if isinstance(field.validation_alias, str)
}


def load_api_settings(**overrides: object) -> ApiSettings:
    """Read the settings from the environment (`overrides` by field name win);
    `ConfigurationError` names every variable that is invalid (never its value)."""
    try:
        return ApiSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems: list[str] = []
        names: list[str] = []
        for detail in error.errors(include_url=False, include_input=False):
            field = str(detail["loc"][0]) if detail["loc"] else ""
            name = _ENV_NAMES.get(field, field) or "settings"
            names.append(name)
            if detail["type"] == "missing":
                problems.append(f"{name} is not set")
            else:
                problems.append(f"{name}: {detail['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError(
            "invalid API settings: " + "; ".join(problems), variables=tuple(names)
        ) from None


class KeyStoreSettings(BaseSettings):
    """What the `keys` commands read: where the keys are (no LiveKit credentials needed)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    postgres_dsn: PostgresDsn = Field(
        SecretStr(DEFAULT_DSN), validation_alias="TURNLOG_POSTGRES_DSN"
    )
    postgres_schema: str = Field("public", min_length=1, validation_alias="TURNLOG_POSTGRES_SCHEMA")
