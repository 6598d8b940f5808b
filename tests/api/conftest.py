"""Fixtures of the API tests: the app on this test's PostgreSQL schema (and ClickHouse
database, topics, LiveKit server when the test asks), API keys of each scope, and a
client that runs the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import insert_key
from api.settings import ApiSettings, load_api_settings
from projections.clickhouse.store import AnalyticsStore
from tests.conftest import PgSchema

LIVEKIT_KEY = "devkey"
LIVEKIT_SECRET = "turnlog-test-secret-0123456789abcdef"  # 32+ bytes: no weak-key warning
"""What the tests sign tokens with (the LiveKit server fixture accepts the same)."""


@dataclass(frozen=True)
class Keys:
    """One API key per scope set, made in this test's schema."""

    tokens: str
    read: str
    admin: str
    all: str

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def make_keys(dsn: str, schema: str) -> Keys:
    with psycopg.connect(dsn, autocommit=True) as conn:
        made = {
            name: insert_key(conn, name=f"test-{name}", scopes=scopes, schema=schema)[0]
            for name, scopes in {
                "tokens": ["tokens"], "read": ["read"], "admin": ["admin"],
                "all": ["tokens", "read", "admin"],
            }.items()
        }  # fmt: skip
    return Keys(**made)


def settings_for(dsn: str, schema: str, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "postgres_dsn": dsn,
        "postgres_schema": schema,
        "livekit_api_key": LIVEKIT_KEY,
        "livekit_api_secret": LIVEKIT_SECRET,
        "rate_limit_per_address": 100_000,
        "rate_limit_per_key": 100_000,
        "clickhouse_database": "turnlog_api_none",
        "kafka_bootstrap": "127.0.0.1:19092",
    }
    return load_api_settings(**(values | overrides))


@pytest.fixture
def keys(pg_schema: PgSchema) -> Keys:
    return make_keys(pg_schema.dsn, pg_schema.name)


AppFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(
    pg_schema: PgSchema, analytics_store: AnalyticsStore, kafka_bootstrap: str
) -> Iterator[AppFactory]:
    """`make_client(**settings)`: a started app on this test's schema, with the analytics
    store this process owns."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = settings_for(
            pg_schema.dsn, pg_schema.name, **({"kafka_bootstrap": kafka_bootstrap} | overrides)
        )
        app: FastAPI = create_app(settings, analytics_store=analytics_store)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: AppFactory) -> TestClient:
    return make_client()
