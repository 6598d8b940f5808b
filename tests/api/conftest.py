"""Fixtures of the API tests: the app on this test's PostgreSQL schema (and ClickHouse
database, topics, LiveKit server when the test asks), API keys of each scope, and a
client that runs the app's lifespan."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import PgSchema
from turnlog.api.app import create_app
from turnlog.api.keys import insert_key
from turnlog.api.settings import ApiSettings, load_api_settings
from turnlog.infra.stack.config import StackSettings
from turnlog.projections.clickhouse.store import AnalyticsStore

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
        "rate_limit_per_identity": 100_000,
        "auth_failures_per_address": 100_000,
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
        store = overrides.pop("analytics_store", analytics_store)
        settings = settings_for(
            pg_schema.dsn, pg_schema.name, **({"kafka_bootstrap": kafka_bootstrap} | overrides)
        )
        app: FastAPI = create_app(settings, analytics_store=store)
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


class ServedApp:
    """An app served by uvicorn on a loopback port in a thread of this process (which
    owns the test's chDB folder), for what the test client cannot do: endless streams."""

    def __init__(self, app: FastAPI) -> None:
        import socket
        import threading

        import uvicorn

        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


@pytest.fixture
def serve(
    pg_schema: PgSchema, analytics_store: AnalyticsStore, kafka_bootstrap: str
) -> Iterator[Callable[..., ServedApp]]:
    """`serve(**settings)`: the app on this test's schema behind a real uvicorn."""
    served: list[ServedApp] = []

    def start(**overrides: Any) -> ServedApp:
        settings = settings_for(
            pg_schema.dsn, pg_schema.name, **({"kafka_bootstrap": kafka_bootstrap} | overrides)
        )
        served.append(ServedApp(create_app(settings, analytics_store=analytics_store)))
        return served[-1]

    yield start
    for app in served:
        app.stop()


def free_port(kind: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def livekit_server(
    stack_settings: StackSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real LiveKit server of our own (the stack launcher's component, on free loopback
    ports, signing with `LIVEKIT_SECRET`); its URL."""
    import socket

    from turnlog.infra.stack.livekit import LiveKit  # the stack's LiveKit component: required

    settings = stack_settings.model_copy(update={
        "state_dir": tmp_path_factory.mktemp("livekit"),
        "livekit_port": free_port(socket.SOCK_STREAM),
        "livekit_udp_port": free_port(socket.SOCK_DGRAM),
        "livekit_api_key": LIVEKIT_KEY,
        "livekit_api_secret": LIVEKIT_SECRET,
    })  # fmt: skip
    server = LiveKit(settings)
    server.start()
    try:
        yield settings.livekit_url
    finally:
        server.stop()
