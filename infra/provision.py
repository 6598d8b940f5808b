"""Provision the platform's stores for the services: topics, PostgreSQL schema, analytics DDL.

`turnlog stack up` does this for the local stack; `turnlog provision` does it for stores
someone else runs (docker-compose.yml's init service), from the variables the services read
(`TURNLOG_KAFKA_BOOTSTRAP`, `TURNLOG_POSTGRES_DSN`, ...). Every step is idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnlog.infra.stack.kafka import wait_for_metadata
from turnlog.infra.stack.keys import ensure_kek
from turnlog.infra.stack.topics import ensure_topics
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.store import connect
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.schemas.topics import topic_specs


class ProvisionSettings(BaseSettings):
    """The stores, named by the same variables the services read."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap: str = Field("127.0.0.1:19092", validation_alias="TURNLOG_KAFKA_BOOTSTRAP")
    topic_prefix: str = Field("", validation_alias="TURNLOG_TOPIC_PREFIX")
    postgres_dsn: SecretStr = Field(
        SecretStr("postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"),
        validation_alias="TURNLOG_POSTGRES_DSN",
    )
    postgres_schema: str = Field("public", validation_alias="TURNLOG_POSTGRES_SCHEMA")
    clickhouse_url: str = Field(validation_alias="TURNLOG_CLICKHOUSE_URL")
    """Required here: provisioning is for stores the launcher does not run."""
    clickhouse_database: str = Field("turnlog", validation_alias="TURNLOG_CLICKHOUSE_DATABASE")
    kek_dir: Path | None = Field(None, validation_alias="TURNLOG_KEK_DIR")
    """Where to make the key-encryption key once (`keys/kek.pem`, `keys/kek.pub.pem`), for
    the API to open sealed fields; unset: none is made (bring your own)."""
    kek_public_copy: Path | None = Field(None, validation_alias="TURNLOG_KEK_PUBLIC_COPY")
    """Where to copy the public half for agents (a volume they may read)."""


def provision(settings: ProvisionSettings, report: Callable[[str], None] = print) -> None:
    asyncio.run(wait_for_metadata(settings.kafka_bootstrap, within=120))
    changes = asyncio.run(
        ensure_topics(settings.kafka_bootstrap, topic_specs(settings.topic_prefix))
    )
    report("topics     " + ("; ".join(changes) if changes else "up to date"))
    applied = migrate_postgres(
        settings.postgres_dsn.get_secret_value(), schema=settings.postgres_schema
    )
    report(f"postgres   {len(applied)} migration(s) applied to {settings.postgres_schema}")
    store = connect(settings.clickhouse_url)
    try:
        migrate_clickhouse(store, database=settings.clickhouse_database)
    finally:
        store.close()
    report(f"clickhouse database {settings.clickhouse_database} migrated")
    if settings.kek_dir is not None:
        report("keys       " + ensure_kek(settings.kek_dir, share_with=settings.kek_public_copy))
