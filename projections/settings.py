"""Setting types shared by the processes that read or write the projections (the streams
worker, the API): the PostgreSQL DSN and the ClickHouse URL, checked the same way for all.

    postgres_dsn: PostgresDsn = Field(..., validation_alias="TURNLOG_POSTGRES_DSN")
    clickhouse_url: ClickHouseUrl | None = Field(None, validation_alias="TURNLOG_CLICKHOUSE_URL")
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, SecretStr

DSN_SCHEMES: Final = ("postgresql://", "postgres://")
CLICKHOUSE_SCHEMES: Final = ("chdb:///", "http://", "https://")


def _postgres_dsn(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().startswith(DSN_SCHEMES):
        raise ValueError("must be a postgresql:// URL")
    return value


def _clickhouse_url(value: str) -> str:
    if not value.startswith(CLICKHOUSE_SCHEMES):
        raise ValueError("must be chdb:///abs/path or http(s)://host:port")
    return value


PostgresDsn = Annotated[SecretStr, AfterValidator(_postgres_dsn)]
"""A PostgreSQL URL, kept secret (it may hold a password)."""

ClickHouseUrl = Annotated[str, AfterValidator(_clickhouse_url)]
"""`chdb:///abs/path` (embedded) or `http(s)://host:port` (a server)."""
