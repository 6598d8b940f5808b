"""Analytics routes on data written by the real ClickHouse projection (the embedded
engine this test process owns): percentiles, usage, overview, and analysts' SQL with its
refusals."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Keys
from tests.api.sessions_data import write_clickhouse
from tests.integration.test_ch_fixture_sessions import fixture_events
from turnlog.projections.clickhouse.query_endpoint import QueryEndpoint
from turnlog.projections.clickhouse.store import AnalyticsStore, ChdbStore

pytestmark = pytest.mark.integration


EVENTS = fixture_events(shift_to_now=True)
"""The recorded sessions, the first starting half an hour ago (the others later)."""


@pytest.fixture
def client(
    make_client: AppFactory, analytics_store: AnalyticsStore, ch_database: str
) -> TestClient:
    write_clickhouse(analytics_store, ch_database, EVENTS)
    return make_client(clickhouse_database=ch_database, analytics_query_rows_max=100)


def window() -> dict[str, str]:
    start = EVENTS[0].time.replace(second=0, microsecond=0)
    end = EVENTS[-1].time.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return {"start": start.isoformat(), "end": end.isoformat()}


def test_latency_percentiles_by_stage_and_provider(client: TestClient, keys: Keys) -> None:
    answer = client.get("/v1/analytics/latency", params=window(), headers=keys.auth(keys.read))
    assert answer.status_code == 200, answer.text
    stats = {(s["stage"], s["provider"], s["model"]): s for s in answer.json()["stats"]}
    assert {stage for stage, _, _ in stats} <= {"eou", "stt", "llm", "tts", "e2e"}
    llm = stats[("llm", "openai", "gpt-4o-mini")]
    assert llm["p50"] == pytest.approx(0.41, abs=0.01)
    for s in stats.values():
        assert s["samples"] > 0
        assert 0 <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"] + 0.001


def test_usage_and_overview(client: TestClient, keys: Keys) -> None:
    auth = keys.auth(keys.read)
    usage = client.get("/v1/analytics/usage", params=window(), headers=auth).json()["usage"]
    llm = [u for u in usage if u["kind"] == "llm"]
    assert llm
    assert all(u["requests"] > 0 and u["input_tokens"] > 0 for u in llm)
    minutes = client.get("/v1/analytics/overview", params=window(), headers=auth).json()["minutes"]
    span = datetime.fromisoformat(window()["end"]) - datetime.fromisoformat(window()["start"])
    assert len(minutes) == span // timedelta(minutes=1)  # every minute, quiet ones included
    assert sum(m["sessions_started"] for m in minutes) == 3
    assert sum(m["sessions_failed"] for m in minutes) == 1
    rates = [m["interruption_rate"] for m in minutes if m["turns"]]
    assert rates
    assert all(0 <= r <= 1 for r in rates)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "start"),
        ({"start": "2024-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "start"),
    ],
)
def test_windows_are_checked(client: TestClient, keys: Keys, params: dict[str, str],
                             field: str) -> None:  # fmt: skip
    answer = client.get("/v1/analytics/latency", params=params, headers=keys.auth(keys.read))
    assert (answer.status_code, answer.json()["field"]) == (400, field)
    naive = client.get("/v1/analytics/usage", params={"start": "2025-01-01T00:00:00"},
                       headers=keys.auth(keys.read))  # fmt: skip
    assert naive.status_code == 422


def query(client: TestClient, keys: Keys, body: dict[str, Any], key: str | None = None) -> Any:
    return client.post("/v1/analytics/query", json=body, headers=keys.auth(key or keys.admin))


def test_analysts_read_only_sql(client: TestClient, keys: Keys) -> None:
    answer = query(client, keys, {
        "sql": "SELECT type, count() AS n FROM events WHERE session_id = {sid:String} "
               "GROUP BY type ORDER BY n DESC, type LIMIT 3",
        "parameters": {"sid": "sess_tutor_happy"},
    })  # fmt: skip
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["columns"] == ["type", "n"]
    assert len(out["rows"]) == 3
    assert out["truncated"] is False
    capped = query(client, keys, {"sql": "SELECT number FROM system.numbers LIMIT 50",
                                  "max_rows": 10}).json()  # fmt: skip
    assert (len(capped["rows"]), capped["truncated"]) == (10, True)


@pytest.mark.parametrize(
    ("sql", "status", "reason"),
    [
        ("INSERT INTO events (session_id) VALUES ('x')", 403, "query_refused"),
        ("DROP TABLE events", 403, "query_refused"),
        ("SELECT * FROM url('http://127.0.0.1:1/x', CSV)", 403, "query_refused"),
        ("SELEKT 1", 400, "query_invalid"),
        ("SELECT no_such_column FROM events", 400, "query_invalid"),
        ("SELECT sleepEachRow(0.5) FROM system.numbers LIMIT 10", 408, "query_timeout"),
    ],
)
def test_analysts_sql_refusals(client: TestClient, keys: Keys, sql: str, status: int,
                               reason: str) -> None:  # fmt: skip
    answer = query(client, keys, {"sql": sql, "timeout_s": 1})
    assert answer.status_code == status, answer.text
    assert (answer.json()["error"], answer.json()["field"]) == (reason, "sql")


def test_analysts_sql_limits_and_scope(client: TestClient, keys: Keys) -> None:
    too_many = query(client, keys, {"sql": "SELECT 1", "max_rows": 101})
    assert (too_many.status_code, too_many.json()["field"]) == (400, "max_rows")
    too_long = query(client, keys, {"sql": "SELECT 1", "timeout_s": 31})
    assert (too_long.status_code, too_long.json()["field"]) == (400, "timeout_s")
    assert query(client, keys, {"sql": "SELECT 1"}, key=keys.read).status_code == 403
    assert query(client, keys, {"sql": ""}).status_code == 422


def test_an_embedded_store_is_read_through_its_owners_endpoint(
    make_client: AppFactory, analytics_store: AnalyticsStore, ch_database: str, keys: Keys
) -> None:
    """As beside the streams worker: the API does not open the chDB folder, it asks the
    owner's published query endpoint (here this process is the owner)."""
    write_clickhouse(analytics_store, ch_database, EVENTS)
    assert isinstance(analytics_store, ChdbStore)
    with QueryEndpoint(analytics_store, database=ch_database):
        client = make_client(
            clickhouse_url=f"chdb://{analytics_store.path}", clickhouse_database=ch_database,
            analytics_store=None,
        )  # fmt: skip
        assert client.get("/readyz").json()["checks"]["analytics"]["ok"] is True
        stats = client.get("/v1/analytics/latency", params=window(),
                           headers=keys.auth(keys.read)).json()["stats"]  # fmt: skip
        assert any(s["stage"] == "llm" for s in stats)
        capped = query(client, keys, {"sql": "SELECT number FROM system.numbers LIMIT 50",
                                      "max_rows": 10}).json()  # fmt: skip
        assert (len(capped["rows"]), capped["truncated"]) == (10, True)
        refused = query(client, keys, {"sql": "DROP TABLE events"})
        assert (refused.status_code, refused.json()["error"]) == (403, "query_refused")
    # The owner stopped serving: the store is unavailable, and readiness says so.
    gone = client.get("/v1/analytics/latency", params=window(), headers=keys.auth(keys.read))
    assert (gone.status_code, gone.json()["dependency"]) == (503, "analytics")
    assert gone.headers["retry-after"] == "5"
