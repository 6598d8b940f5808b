"""Operations routes: liveness, readiness naming the dependency that fails, metrics."""

from __future__ import annotations

import pytest

from tests.api.conftest import AppFactory, Keys
from tests.conftest import Topics

pytestmark = pytest.mark.integration


def test_healthz(make_client: AppFactory) -> None:
    answer = make_client(kafka_bootstrap="127.0.0.1:1").get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_readyz_when_everything_answers(
    make_client: AppFactory, ch_database: str, topics: Topics
) -> None:
    client = make_client(clickhouse_database=ch_database, topic_prefix=topics.prefix)
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "ready",
        "checks": {
            name: {"ok": True, "error": None} for name in ("postgres", "analytics", "kafka")
        },
    }


def test_readyz_names_what_fails(make_client: AppFactory, ch_database: str) -> None:
    client = make_client(
        clickhouse_database="no_such_database", kafka_bootstrap="127.0.0.1:1",
        topic_prefix="no-such-prefix.",
    )  # fmt: skip
    answer = client.get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["postgres"] == {"ok": True, "error": None}
    assert checks["analytics"] == {
        "ok": False,
        "error": "the analytics store has no database 'no_such_database'",
    }
    assert checks["kafka"]["ok"] is False
    assert "127.0.0.1:1" in checks["kafka"]["error"]


def test_readyz_names_a_missing_topic(make_client: AppFactory, ch_database: str) -> None:
    client = make_client(clickhouse_database=ch_database, topic_prefix="no-such-prefix.")
    checks = client.get("/readyz").json()["checks"]
    assert checks["kafka"] == {
        "ok": False,
        "error": "Kafka has no topic 'no-such-prefix.turnlog.events'",
    }


def test_readyz_names_an_unmigrated_schema(make_client: AppFactory) -> None:
    client = make_client(postgres_schema="no_such_schema")
    checks = client.get("/readyz").json()["checks"]
    assert checks["postgres"]["ok"] is False
    assert "no_such_schema" in checks["postgres"]["error"]


def test_metrics_count_requests_by_route_template(make_client: AppFactory, keys: Keys) -> None:
    client = make_client()
    client.get("/v1/sessions/abc", headers=keys.auth(keys.read))
    client.get("/v1/sessions/def", headers=keys.auth(keys.read))
    client.get("/v1/nowhere/at/all")
    text = client.get("/metrics").text
    assert (
        'turnlog_api_requests_total{method="GET",route="/v1/sessions/{session_id}",'
        'status="404"} 2.0'
    ) in text
    assert 'route="<unmatched>",status="404"} 1.0' in text
    assert "turnlog_api_request_duration_seconds_bucket" in text
    assert "/v1/sessions/abc" not in text
