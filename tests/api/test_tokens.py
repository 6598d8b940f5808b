"""`POST /v1/tokens` on the real PostgreSQL: tokens verify with livekit-api and carry
exactly the intended grants and dispatch; every validation, auth and limit failure
answers its status and reason; each issuance is recorded without the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from livekit.api import TokenVerifier

from tests.api.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, AppFactory, Keys
from tests.conftest import PgSchema
from turnlog.api.keys import revoke_key
from turnlog.api.settings import load_api_settings

pytestmark = pytest.mark.integration

BODY = {"room": "math-room-1", "identity": "student-42"}


def claims_of(token: str) -> dict[str, Any]:
    raw: dict[str, Any] = jwt.decode(token, LIVEKIT_SECRET, algorithms=["HS256"],
                                     issuer=LIVEKIT_KEY)  # fmt: skip
    return raw


def test_token_carries_exactly_the_client_grants_and_the_dispatch(
    client: TestClient, keys: Keys
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    body = {**BODY, "name": "Ada", "metadata": '{"course": "algebra"}', "ttl_seconds": 300}
    answer = client.post("/v1/tokens", json=body, headers=keys.auth(keys.tokens))
    assert answer.status_code == 201, answer.text
    out = answer.json()
    assert set(out) == {
        "token", "livekit_url", "room", "identity", "expires_at", "can_publish_data",
    }  # fmt: skip
    assert out["can_publish_data"] is True
    assert (out["room"], out["identity"], out["livekit_url"]) == (
        "math-room-1",
        "student-42",
        "ws://127.0.0.1:7880",
    )
    assert answer.headers["cache-control"] == "no-store"

    verified = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(out["token"])
    assert (verified.identity, verified.name, verified.metadata) == (
        "student-42",
        "Ada",
        '{"course": "algebra"}',
    )
    assert verified.room_config is not None
    assert [a.agent_name for a in verified.room_config.agents] == ["turnlog-tutor"]

    raw = claims_of(out["token"])
    # Exactly these grants: nothing admin, create, list, record, agent or SIP; data
    # messages (typed chat) by default.
    assert raw["video"] == {
        "roomJoin": True,
        "room": "math-room-1",
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "canPublishSources": ["microphone"],
    }
    assert set(raw) == {"video", "roomConfig", "sub", "iss", "nbf", "exp", "name", "metadata"}
    assert raw["roomConfig"] == {"agents": [{"agentName": "turnlog-tutor"}]}
    expires = datetime.fromisoformat(out["expires_at"])
    assert raw["exp"] == int(expires.timestamp())
    assert before + timedelta(seconds=300) <= expires <= before + timedelta(seconds=302)


@pytest.mark.parametrize("publish_data", [True, False])
def test_default_ttl_is_short_and_data_publishing_is_a_setting(
    make_client: AppFactory, keys: Keys, publish_data: bool
) -> None:
    client = make_client(token_can_publish_data=publish_data, agent_name="")
    out = client.post("/v1/tokens", json=BODY, headers=keys.auth(keys.tokens)).json()
    raw = claims_of(out["token"])
    assert raw["exp"] - raw["nbf"] == 600
    # The grant and the response agree: a client can tell its typed chat would be dropped.
    assert raw["video"]["canPublishData"] is publish_data
    assert out["can_publish_data"] is publish_data
    assert "roomConfig" not in raw  # no agent name: no dispatch


def test_data_publishing_is_allowed_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TURNLOG_TOKEN_PUBLISH_DATA", raising=False)
    settings = load_api_settings(livekit_api_key=LIVEKIT_KEY, livekit_api_secret=LIVEKIT_SECRET)
    assert settings.token_can_publish_data is True


def test_each_issuance_is_recorded_without_the_token(
    client: TestClient, keys: Keys, pg_schema: PgSchema
) -> None:
    tokens = [
        client.post("/v1/tokens", json={**BODY, "identity": f"s{i}"},
                    headers=keys.auth(keys.tokens)).json()["token"]
        for i in range(3)
    ]  # fmt: skip
    client.__exit__(None, None, None)  # shutdown writes what is buffered
    with pg_schema.connect() as conn:
        rows = conn.execute(
            "SELECT i.*, k.name FROM token_issuances i JOIN api_keys k USING (key_id) "
            "ORDER BY issuance_id"
        ).fetchall()
        columns = [c.name for c in conn.execute("SELECT * FROM token_issuances").description or []]
    assert [(r[4], r[5], r[-1]) for r in rows] == [
        ("math-room-1", f"s{i}", "test-tokens") for i in range(3)
    ]
    assert not any(c == "token" for c in columns)
    assert not any(t in str(row) for t in tokens for row in rows)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identity": "a"}, "body.room"),
        ({"room": "r"}, "body.identity"),
        ({**BODY, "room": ""}, "body.room"),
        ({**BODY, "room": "r" * 129}, "body.room"),
        ({**BODY, "room": "room with spaces"}, "body.room"),
        ({**BODY, "room": "../etc"}, "body.room"),
        ({**BODY, "identity": "a/b"}, "body.identity"),
        ({**BODY, "identity": "x" * 129}, "body.identity"),
        ({**BODY, "name": "bad\nname"}, "body.name"),
        ({**BODY, "name": "n" * 129}, "body.name"),
        ({**BODY, "ttl_seconds": 0}, "body.ttl_seconds"),
        ({**BODY, "ttl_seconds": "soon"}, "body.ttl_seconds"),
        ({**BODY, "admin": True}, "body.admin"),
    ],
)
def test_invalid_bodies_name_the_field(
    client: TestClient, keys: Keys, body: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/tokens", json=body, headers=keys.auth(keys.tokens))
    assert answer.status_code == 422
    out = answer.json()
    assert out["error"] == "validation_failed"
    assert field in [f["field"] for f in out["fields"]]


def test_ttl_and_metadata_bounds_come_from_the_settings(
    make_client: AppFactory, keys: Keys
) -> None:
    client = make_client(token_ttl_min_s=60, token_ttl_max_s=900, token_metadata_max_length=8)
    auth = keys.auth(keys.tokens)
    for ttl in (59, 901):
        answer = client.post("/v1/tokens", json={**BODY, "ttl_seconds": ttl}, headers=auth)
        assert answer.status_code == 400
        assert answer.json() == {
            "error": "invalid_request",
            "field": "ttl_seconds",
            "message": "ttl_seconds must be between 60 and 900",
        }
    answer = client.post("/v1/tokens", json={**BODY, "metadata": "ééééééééé"}, headers=auth)
    assert (answer.status_code, answer.json()["field"]) == (400, "metadata")
    ok = client.post("/v1/tokens", json={**BODY, "metadata": "12345678", "ttl_seconds": 900},
                     headers=auth)  # fmt: skip
    assert ok.status_code == 201


def test_malformed_json_is_refused(client: TestClient, keys: Keys) -> None:
    answer = client.post(
        "/v1/tokens",
        content=b"{not json",
        headers={**keys.auth(keys.tokens), "content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"] == "validation_failed"


def test_authentication_and_scopes(client: TestClient, keys: Keys, pg_schema: PgSchema) -> None:
    answer = client.post("/v1/tokens", json=BODY)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthenticated"
    assert answer.headers["www-authenticate"] == "Bearer"
    for bad in ("Bearer nope", "Bearer tlk_" + "x" * 43, "Basic dXNlcjpwdw==", "tlk_x"):
        answer = client.post("/v1/tokens", json=BODY, headers={"Authorization": bad})
        assert answer.status_code == 401, bad
    for key in (keys.read, keys.admin):
        answer = client.post("/v1/tokens", json=BODY, headers=keys.auth(key))
        assert answer.status_code == 403
        assert answer.json() == {
            "error": "forbidden",
            "message": "this route needs an API key with the 'tokens' scope",
        }
    assert client.post("/v1/tokens", json=BODY, headers=keys.auth(keys.all)).status_code == 201


def test_a_revoked_key_stops_working(
    make_client: AppFactory, keys: Keys, pg_schema: PgSchema
) -> None:
    client = make_client()
    with pg_schema.connect() as conn:
        row = conn.execute("SELECT key_id FROM api_keys WHERE name = 'test-tokens'").fetchone()
    assert row is not None
    key_id = str(row[0])
    assert revoke_key(pg_schema.dsn, key_id, schema=pg_schema.name)
    assert not revoke_key(pg_schema.dsn, key_id, schema=pg_schema.name)
    answer = client.post("/v1/tokens", json=BODY, headers=keys.auth(keys.tokens))
    assert answer.status_code == 401


def test_a_backend_with_a_valid_key_is_not_limited_per_address(
    make_client: AppFactory, keys: Keys
) -> None:
    client = make_client(rate_limit_per_address=10, rate_limit_per_identity=10)
    auth = keys.auth(keys.tokens)
    statuses = [
        client.post("/v1/tokens", json={**BODY, "identity": f"student-{i}"}, headers=auth)
        for i in range(15)
    ]
    assert [s.status_code for s in statuses] == [201] * 15  # the 11th too, same address


def test_rate_limit_per_identity_answers_429_with_retry_after(
    make_client: AppFactory, keys: Keys
) -> None:
    client = make_client(rate_limit_per_identity=3)
    auth = keys.auth(keys.tokens)
    statuses = [client.post("/v1/tokens", json=BODY, headers=auth).status_code for _ in range(3)]
    assert statuses == [201, 201, 201]
    refused = client.post("/v1/tokens", json=BODY, headers=auth)
    assert refused.status_code == 429
    out = refused.json()
    assert (out["error"], out["field"]) == ("rate_limited", "identity")
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60  # the end of the identity's one-minute window
    assert out["retry_after"] == retry_after
    # Another identity, or the same identity through another key, has its own allowance.
    other = {**BODY, "identity": "student-43"}
    assert client.post("/v1/tokens", json=other, headers=auth).status_code == 201
    assert client.post("/v1/tokens", json=BODY, headers=keys.auth(keys.all)).status_code == 201
    metrics = client.get("/metrics").text
    assert 'turnlog_api_tokens_refused_total{reason="rate_limited"} 1.0' in metrics
    assert "turnlog_api_tokens_issued_total 5.0" in metrics


def test_rate_limit_per_key(make_client: AppFactory, keys: Keys) -> None:
    client = make_client(rate_limit_per_key=2)
    auth = keys.auth(keys.read)
    assert [client.get("/v1/sessions", headers=auth).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert int(client.get("/v1/sessions", headers=auth).headers["retry-after"]) >= 1
    # Another key has its own allowance.
    assert client.get("/v1/sessions", headers=keys.auth(keys.all)).status_code == 200


def test_failed_authentications_are_limited_per_address(
    make_client: AppFactory, keys: Keys
) -> None:
    client = make_client(auth_failures_per_address=3)
    wrong = {"Authorization": "Bearer tlk_" + "x" * 43}
    assert [client.get("/v1/sessions", headers=wrong).status_code for _ in range(3)] == [401] * 3
    refused = client.get("/v1/sessions", headers=wrong)
    assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    # The address waits, whatever key it sends now.
    assert client.get("/v1/sessions", headers=keys.auth(keys.read)).status_code == 429


def test_security_headers_on_every_response(client: TestClient, keys: Keys) -> None:
    for answer in (
        client.post("/v1/tokens", json=BODY, headers=keys.auth(keys.tokens)),
        client.post("/v1/tokens", json={}),
        client.get("/v1/nowhere"),
        client.get("/healthz"),
    ):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    page = client.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert "script-src https://cdn.jsdelivr.net 'sha256-" in csp


def test_cors_origins_come_from_the_settings(make_client: AppFactory) -> None:
    client = make_client(cors_origins=["https://app.example"])
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = client.options("/v1/tokens", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = client.options("/v1/tokens", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_secret_in_any_answer(make_client: AppFactory, keys: Keys, pg_schema: PgSchema) -> None:
    client = make_client()
    texts = [
        client.post(
            "/v1/tokens", json={**BODY, "room": "x y"}, headers=keys.auth(keys.tokens)
        ).text,
        client.get("/readyz").text,
        client.get("/metrics").text,
        client.get("/openapi.json").text,
    ]
    for text in texts:
        assert LIVEKIT_SECRET not in text
        assert "turnlog:turnlog@" not in text
        assert keys.tokens not in text
