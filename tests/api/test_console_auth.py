"""Console login on the real PostgreSQL: a session cookie stands for the API key it
logged in with (HttpOnly, SameSite=Strict, only its hash stored), unsafe requests with it
need the CSRF token, logout and key revocation end it, and logins are limited."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Keys
from tests.conftest import PgSchema
from turnlog.api.keys import revoke_key

pytestmark = pytest.mark.integration

TOKEN_BODY = {"room": "math-room-1", "identity": "student-42"}
COOKIE = re.compile(
    r"^turnlog_session=([A-Za-z0-9_-]{43}); HttpOnly; SameSite=Strict; Path=/; Max-Age=(\d+)$"
)


def login(client: TestClient, key: str, **headers: str) -> tuple[str, dict[str, object]]:
    answer = client.post("/v1/auth/login", json={"api_key": key}, headers=headers)
    assert answer.status_code == 200, answer.text
    match = COOKIE.match(answer.headers["set-cookie"])
    assert match, answer.headers["set-cookie"]
    client.cookies.clear()  # each request below names its cookie
    body: dict[str, object] = answer.json()
    return match[1], body


def with_cookie(cookie: str, **headers: str) -> dict[str, str]:
    return {"Cookie": f"turnlog_session={cookie}", **headers}


def test_login_sets_an_opaque_strict_cookie_and_stores_only_its_hash(
    make_client: AppFactory, keys: Keys, pg_schema: PgSchema
) -> None:
    client = make_client(console_session_ttl_s=3600)
    before = datetime.now(UTC)
    answer = client.post("/v1/auth/login", json={"api_key": keys.all})
    assert answer.status_code == 200
    match = COOKIE.match(answer.headers["set-cookie"])
    assert match is not None
    cookie, max_age = match[1], int(match[2])
    assert max_age == 3600
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"key_name", "scopes", "csrf_token", "expires_at"}
    assert (body["key_name"], body["scopes"]) == ("test-all", ["tokens", "read", "admin"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(seconds=3598) <= expires <= before + timedelta(seconds=3602)
    assert keys.all not in answer.text
    with pg_schema.connect() as conn:
        rows = conn.execute("SELECT * FROM console_sessions").fetchall()
    assert len(rows) == 1
    assert cookie not in str(rows)
    assert cookie.encode() not in rows[0][0]
    # The same body for the cookie, no new cookie.
    client.cookies.clear()
    again = client.get("/v1/auth/session", headers=with_cookie(cookie))
    assert again.status_code == 200
    assert again.json() == body
    assert "set-cookie" not in again.headers


def test_the_cookie_is_secure_over_https(make_client: AppFactory, keys: Keys) -> None:
    client = make_client()
    client.base_url = client.base_url.copy_with(scheme="https")
    answer = client.post("/v1/auth/login", json={"api_key": keys.read})
    assert answer.status_code == 200
    assert answer.headers["set-cookie"].endswith("; Secure")


def test_no_session_without_a_live_cookie(client: TestClient) -> None:
    for headers in ({}, with_cookie("x" * 43), with_cookie("")):
        answer = client.get("/v1/auth/session", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthenticated"


def test_a_wrong_key_is_401_and_counts_toward_the_address_failures(
    make_client: AppFactory, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(auth_failures_per_address=2)
    caplog.set_level(logging.DEBUG)
    wrong = "tlk_" + "w" * 43
    for _ in range(2):
        answer = client.post("/v1/auth/login", json={"api_key": wrong})
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthenticated"
        assert "set-cookie" not in answer.headers
        assert wrong not in answer.text
    refused = client.post("/v1/auth/login", json={"api_key": keys.all})
    assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert wrong not in caplog.text
    assert keys.all not in caplog.text


def test_logins_are_limited_per_address(make_client: AppFactory, keys: Keys) -> None:
    client = make_client(rate_limit_per_address=2)
    for _ in range(2):
        login(client, keys.read)
    refused = client.post("/v1/auth/login", json={"api_key": keys.read})
    assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")


def test_a_cross_site_login_is_refused(make_client: AppFactory, keys: Keys) -> None:
    client = make_client(cors_origins=["https://console.example"])
    refused = client.post(
        "/v1/auth/login", json={"api_key": keys.read}, headers={"Origin": "https://evil.example"}
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert "set-cookie" not in refused.headers
    login(client, keys.read, Origin="http://testserver")  # the API's own origin
    login(client, keys.read, Origin="https://console.example")  # a configured one
    login(client, keys.read)  # no Origin: not a browser's cross-site request


def test_the_cookie_authenticates_every_route_and_unsafe_ones_need_csrf(
    client: TestClient, keys: Keys
) -> None:
    cookie, body = login(client, keys.all)
    csrf = str(body["csrf_token"])
    assert client.get("/v1/sessions", headers=with_cookie(cookie)).status_code == 200
    for headers in (with_cookie(cookie), with_cookie(cookie, **{"X-CSRF-Token": "nope"})):
        refused = client.post("/v1/tokens", json=TOKEN_BODY, headers=headers)
        assert refused.status_code == 403
        out = refused.json()
        assert out["error"] == "csrf_failed"
        assert "X-CSRF-Token" in out["message"]
        assert csrf not in refused.text
        assert cookie not in refused.text
    issued = client.post(
        "/v1/tokens", json=TOKEN_BODY, headers=with_cookie(cookie, **{"X-CSRF-Token": csrf})
    )
    assert issued.status_code == 201
    # A bearer key needs no CSRF token, and wins over a cookie sent alongside.
    bearer = client.post("/v1/tokens", json=TOKEN_BODY, headers=keys.auth(keys.tokens))
    assert bearer.status_code == 201
    both = client.post(
        "/v1/tokens", json=TOKEN_BODY, headers={**with_cookie(cookie), **keys.auth(keys.tokens)}
    )
    assert both.status_code == 201


def test_a_session_has_its_keys_scopes(client: TestClient, keys: Keys) -> None:
    cookie, body = login(client, keys.read)
    assert body["scopes"] == ["read"]
    headers = with_cookie(cookie, **{"X-CSRF-Token": str(body["csrf_token"])})
    refused = client.post("/v1/tokens", json=TOKEN_BODY, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")


def test_logout_needs_csrf_ends_the_session_and_clears_the_cookie(
    client: TestClient, keys: Keys, pg_schema: PgSchema
) -> None:
    cookie, body = login(client, keys.read)
    refused = client.post("/v1/auth/logout", headers=with_cookie(cookie))
    assert (refused.status_code, refused.json()["error"]) == (403, "csrf_failed")
    answer = client.post(
        "/v1/auth/logout", headers=with_cookie(cookie, **{"X-CSRF-Token": str(body["csrf_token"])})
    )
    assert answer.status_code == 204
    assert answer.headers["set-cookie"] == (
        "turnlog_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    )
    assert client.get("/v1/auth/session", headers=with_cookie(cookie)).status_code == 401
    assert client.get("/v1/sessions", headers=with_cookie(cookie)).status_code == 401
    with pg_schema.connect() as conn:
        assert conn.execute("SELECT count(*) FROM console_sessions").fetchone() == (0,)


def test_revoking_the_key_ends_its_sessions(
    client: TestClient, keys: Keys, pg_schema: PgSchema
) -> None:
    cookie, _ = login(client, keys.read)
    used, _ = login(client, keys.read)
    assert client.get("/v1/sessions", headers=with_cookie(used)).status_code == 200
    with pg_schema.connect() as conn:
        row = conn.execute("SELECT key_id FROM api_keys WHERE name = 'test-read'").fetchone()
    assert row is not None
    assert revoke_key(pg_schema.dsn, str(row[0]), schema=pg_schema.name)
    assert client.get("/v1/sessions", headers=with_cookie(cookie)).status_code == 401
    # A session in use is cached for a few seconds; then (here: at once) it ends too.
    client.app.state.services.console_sessions.forget()  # type: ignore[attr-defined]
    assert client.get("/v1/auth/session", headers=with_cookie(used)).status_code == 401


def test_an_expired_session_ends(client: TestClient, keys: Keys, pg_schema: PgSchema) -> None:
    cookie, _ = login(client, keys.read)
    with pg_schema.connect() as conn:
        conn.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
    assert client.get("/v1/auth/session", headers=with_cookie(cookie)).status_code == 401
