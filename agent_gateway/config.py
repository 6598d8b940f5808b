"""Settings of the recorder (`RecordSettings`, what `turnlog.record` reads) and of the
platform's own agent worker (`GatewaySettings`, which adds LiveKit and the endpoints).

LiveKit's variables keep LiveKit's names (`LIVEKIT_URL`, `LIVEKIT_API_KEY`,
`LIVEKIT_API_SECRET`); ours start with `TURNLOG_`. Every default works with the local stack
and the LiveKit dev server; the worker's two LiveKit credentials must be set (the dev
server uses `devkey` / `secret`). Loaded by a function, never at import.

This module imports neither LiveKit nor prometheus-client: the worker checks the settings
before it loads either, so a bad setting stops it at once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnlog.agent_gateway.errors import ConfigurationError
from turnlog.schemas.sealing import SealingError, WrappingKey
from turnlog.schemas.topics import EVENTS_TOPIC, KEYS_TOPIC

REPO_ROOT: Final = Path(__file__).resolve().parents[1]

_PLACEHOLDERS: Final = frozenset(
    {"changeme", "change-me", "change_me", "placeholder", "replaceme", "replace-me", "todo"}
)
_PLACEHOLDER_RE: Final = re.compile(r"^(<.*>|x{3,}|\*{3,}|\.{3}|your[-_ ].*)$", re.IGNORECASE)
_URL_SCHEMES: Final = ("ws://", "wss://", "http://", "https://")
_S = TypeVar("_S", bound=BaseSettings)


def default_spool_dir() -> Path:
    """`$XDG_STATE_HOME/turnlog/spool`, else `~/.local/state/turnlog/spool`: state that must
    survive a restart (events waiting for Kafka), kept per user, not in a cache."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "turnlog" / "spool"


def default_kek_public_key() -> Path:
    """`$XDG_STATE_HOME/turnlog/kek.pub.pem`, else `~/.local/state/turnlog/kek.pub.pem`:
    where `make up` leaves the local key store's public key for agents on this machine."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "turnlog" / "kek.pub.pem"


def load_wrapping_key(settings: RecordSettings) -> WrappingKey:
    """The KEK public key the settings name; `ConfigurationError` says what to set."""
    value = settings.kek_public_key.strip()
    if value.startswith("-----BEGIN"):
        pem = value.encode()
    else:
        path = Path(value) if value else default_kek_public_key()
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise ConfigurationError(
                f"TURNLOG_KEK_PUBLIC_KEY: no key-encryption public key at {path} "
                f"({error.strerror}); set it to the PEM file the key store gave you "
                "(`make up` writes the local one to "
                f"{default_kek_public_key()}): personal fields are never published in clear",
                variables=("TURNLOG_KEK_PUBLIC_KEY",),
            ) from None
    try:
        return WrappingKey.from_pem(pem)
    except SealingError as error:
        raise ConfigurationError(
            f"TURNLOG_KEK_PUBLIC_KEY: {error}", variables=("TURNLOG_KEK_PUBLIC_KEY",)
        ) from None


class RecordSettings(BaseSettings):
    """What recording an agent needs: where the log is, where to spool while it is not
    reachable. Every field has an environment variable and a keyword of `turnlog.record`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", min_length=1, validation_alias="TURNLOG_KAFKA_BOOTSTRAP"
    )
    """Kafka bootstrap servers, `host:port[,host:port...]` (the local stack's by default)."""
    topic_prefix: str = Field("", validation_alias="TURNLOG_TOPIC_PREFIX")
    """Prepended to the topic name (tests and shared clusters use it to isolate)."""
    agent_name: str = Field("", validation_alias="TURNLOG_AGENT_NAME")
    """Name in the events' `source`; empty: the job's agent name, else `agent`."""
    spool_dir: Path = Field(default_factory=default_spool_dir, validation_alias="TURNLOG_SPOOL_DIR")
    """Where events wait on disk while Kafka is unreachable (crash-safe, drained in order)."""
    queue_size: int = Field(10_000, ge=1, validation_alias="TURNLOG_PUBLISHER_QUEUE_SIZE")
    """Events the publisher holds in memory before it spills to the spool."""
    publisher_close_timeout: float = Field(
        5.0, gt=0, validation_alias="TURNLOG_PUBLISHER_CLOSE_TIMEOUT"
    )
    """Seconds a job's shutdown waits for the publisher to deliver (the rest is spooled);
    keep it under LiveKit's `shutdown_process_timeout`."""

    kek_public_key: str = Field("", validation_alias="TURNLOG_KEK_PUBLIC_KEY")
    """The key-encryption key's public half: a PEM file's path, or the PEM itself. Empty:
    `default_kek_public_key()`, which the local stack writes. Personal fields are sealed
    with a data key per session that only this key's owner can unwrap; without it the
    recorder refuses to start (it never publishes personal fields in clear)."""
    redact: str = Field("", validation_alias="TURNLOG_REDACT")
    """Redaction before sealing: empty or `off`; `on` (cards, e-mail, phones) or a comma
    list of `card`, `email`, `phone`, `presidio`."""

    @property
    def topic(self) -> str:
        """The events topic, with the prefix."""
        return self.topic_prefix + EVENTS_TOPIC

    @property
    def keys_topic(self) -> str:
        """The wrapped data keys' topic, with the prefix."""
        return self.topic_prefix + KEYS_TOPIC

    @property
    def keys_spool_dir(self) -> Path:
        """The wrapped data keys' own spool, inside the events' one."""
        return self.spool_dir / "keys"


class GatewaySettings(RecordSettings):
    """The platform's agent worker (the tutor example): the recorder's settings, LiveKit,
    and the worker's endpoints."""

    livekit_url: str = Field("ws://127.0.0.1:7880", validation_alias="LIVEKIT_URL")
    """LiveKit server URL the worker registers with (`ws(s)://` or `http(s)://`)."""
    livekit_api_key: SecretStr = Field(validation_alias="LIVEKIT_API_KEY")
    """LiveKit API key; required (the dev server's is `devkey`)."""
    livekit_api_secret: SecretStr = Field(validation_alias="LIVEKIT_API_SECRET")
    """LiveKit API secret; required (the dev server's is `secret`)."""
    agent_name: str = Field("turnlog-tutor", validation_alias="TURNLOG_AGENT_NAME")
    """Name the worker registers for explicit dispatch; empty for automatic dispatch."""
    metrics_port: int = Field(9464, ge=0, le=65535, validation_alias="TURNLOG_GATEWAY_METRICS_PORT")
    """Port of the worker's Prometheus endpoint (`/metrics`); 0 disables it."""
    metrics_host: str = Field("127.0.0.1", validation_alias="TURNLOG_GATEWAY_METRICS_HOST")
    """Address the Prometheus endpoint binds to; loopback unless you mean otherwise."""
    health_host: str = Field("127.0.0.1", validation_alias="TURNLOG_GATEWAY_HEALTH_HOST")
    """Address of LiveKit's worker health server (LiveKit's own default is all interfaces)."""
    health_port: int = Field(8081, ge=0, le=65535, validation_alias="TURNLOG_GATEWAY_HEALTH_PORT")
    """Port of LiveKit's worker health server (`/` answers OK); 0 picks a free port."""
    max_jobs: int | None = Field(None, ge=1, le=1000, validation_alias="TURNLOG_GATEWAY_MAX_JOBS")
    """When set, the load the worker reports is its share of this many concurrent jobs,
    instead of the machine's CPU use (LiveKit's default). The LiveKit server offers no job
    to a worker whose load is at its target (0.7): on one machine that runs the whole
    platform and more, CPU use says little about room for one more call."""
    metrics_dir: Path = Field(
        REPO_ROOT / ".turnlog" / "gateway-metrics",
        validation_alias="TURNLOG_GATEWAY_METRICS_DIR",
    )
    """prometheus-client multiprocess directory shared by the worker and its job processes;
    emptied when the worker starts."""

    @field_validator("livekit_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(_URL_SCHEMES):
            raise ValueError("must start with ws://, wss://, http:// or https://")
        return value

    @field_validator("livekit_api_key", "livekit_api_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        if is_placeholder(value.get_secret_value()):
            raise ValueError("is empty or a placeholder")
        return value


_ENV_NAMES: Final = {
    name: field.validation_alias
    for name, field in GatewaySettings.model_fields.items()
    if isinstance(field.validation_alias, str)
}
"""Each field's environment variable (the worker's settings include the recorder's)."""


def is_placeholder(value: str) -> bool:
    """Whether a secret's value is empty or obviously not a real one (`changeme`, `<key>`,
    `your-api-key`, `xxx`...)."""
    stripped = value.strip()
    return (
        not stripped or stripped.lower() in _PLACEHOLDERS or bool(_PLACEHOLDER_RE.match(stripped))
    )


def load_gateway_settings() -> GatewaySettings:
    """Read the worker's settings from the environment; `ConfigurationError` names every
    variable that is missing, a placeholder or invalid (never its value)."""
    return _load(GatewaySettings, {})


def load_record_settings(**overrides: Any) -> RecordSettings:
    """The recorder's settings: the environment, then the keyword `overrides` that are not
    None (a keyword wins). `ConfigurationError` names what is invalid."""
    given = {name: value for name, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - set(RecordSettings.model_fields))
    if unknown:
        raise ConfigurationError(f"unknown recorder settings: {', '.join(unknown)}")
    return _load(RecordSettings, given)


def _load(cls: type[_S], overrides: dict[str, Any]) -> _S:
    try:
        return cls(**overrides)
    except ValidationError as error:
        problems: list[str] = []
        names: list[str] = []
        for detail in error.errors(include_url=False, include_input=False):
            field = str(detail["loc"][0]) if detail["loc"] else ""
            name = field if field in overrides else _ENV_NAMES.get(field, field)
            names.append(name)
            if detail["type"] == "missing":
                problems.append(f"{name} is not set")
            else:
                problems.append(f"{name}: {detail['msg'].removeprefix('Value error, ')}")
        kind = "gateway" if cls is GatewaySettings else "recorder"
        raise ConfigurationError(
            f"invalid {kind} settings: " + "; ".join(problems), variables=tuple(names)
        ) from None
