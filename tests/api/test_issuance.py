"""The issuance record keeps what it could not write while PostgreSQL refuses it, and
writes it once it can; a full buffer refuses new tokens rather than lose their record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from tests.api.conftest import AppFactory, Keys
from tests.conftest import PgSchema
from turnlog.api.issuance import Issuance, IssuanceLog

pytestmark = pytest.mark.integration


def issuance(identity: str) -> Issuance:
    now = datetime.now(UTC)
    return Issuance(now, "key1", "127.0.0.1", "room-1", identity, now + timedelta(minutes=5),
                    "turnlog-tutor")  # fmt: skip


def test_unwritten_issuances_are_kept_and_written_later(pg_schema: PgSchema) -> None:
    async def scenario() -> list[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            pg_schema.dsn, kwargs={"autocommit": True}, open=True
        )
        log = IssuanceLog(pool, schema=pg_schema.name)
        try:
            with pg_schema.connect() as conn:
                conn.execute("ALTER TABLE token_issuances RENAME TO token_issuances_away")
            log.record(issuance("a"))
            log.record(issuance("b"))
            failed = [await log.flush(), log.failing]
            with pg_schema.connect() as conn:
                conn.execute("ALTER TABLE token_issuances_away RENAME TO token_issuances")
            log.record(issuance("c"))
            recovered = [await log.flush(), log.failing]
        finally:
            pool.close()
        assert (failed, recovered) == ([False, True], [True, False])
        with pg_schema.connect() as conn:
            return conn.execute(
                "SELECT identity FROM token_issuances ORDER BY issuance_id"
            ).fetchall()

    assert asyncio.run(scenario()) == [("a",), ("b",), ("c",)]


def test_a_full_buffer_refuses_tokens(make_client: AppFactory, keys: Keys) -> None:
    client = make_client()
    services = client.app.state.services  # type: ignore[attr-defined]
    services.issuance._max_pending = 0
    answer = client.post("/v1/tokens", json={"room": "r", "identity": "u"},
                         headers=keys.auth(keys.tokens))  # fmt: skip
    assert (answer.status_code, answer.json()["dependency"]) == (503, "postgres")
    assert answer.headers["retry-after"] == "5"


def test_values_round_trip_through_copy(pg_schema: PgSchema) -> None:
    odd = Issuance(
        datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC),
        "k\\1",
        "a\tb\nc\r",
        "room-1",
        "who\\N",
        datetime(2025, 3, 1, 10, 10, tzinfo=UTC),
        None,
    )

    async def write() -> None:
        pool: ConnectionPool[Any] = ConnectionPool(
            pg_schema.dsn, kwargs={"autocommit": True}, open=True
        )
        log = IssuanceLog(pool, schema=pg_schema.name)
        log.record(odd)
        try:
            assert await log.flush() is True
        finally:
            pool.close()

    asyncio.run(write())
    with pg_schema.connect() as conn:
        row = conn.execute(
            "SELECT issued_at, key_id, client_address, room, identity, expires_at, agent_name "
            "FROM token_issuances"
        ).fetchone()
    assert row == (odd.issued_at, "k\\1", "a\tb\nc\r", "room-1", "who\\N", odd.expires_at, None)
