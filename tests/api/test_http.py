"""HTTP conventions of the whole app: every 405 names the allowed methods in `Allow`;
CORS is closed unless origins are configured, and then open to those only."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory

pytestmark = pytest.mark.integration

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,x-csrf-token",
}


def leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route with a path and methods, also inside included routers."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from leaf_routes(inner.routes)
        elif getattr(route, "methods", None):
            yield route


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_405_names_exactly_the_methods_the_path_serves(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    routes = list(leaf_routes(app.router.routes))
    assert {"/v1/tokens", "/v1/sessions/{session_id}/live", "/healthz"} <= {r.path for r in routes}
    checked = 0
    for route in routes:
        path = concrete(route.path)
        served = set().union(*(r.methods for r in routes if r.path_regex.match(path)))
        for method in METHODS:
            if method in served:
                continue
            answer = client.request(method, path)
            assert answer.status_code == 405, (method, path, answer.status_code)
            allow = answer.headers.get("allow", "")
            assert allow, (method, path)
            assert set(allow.split(", ")) == served, (method, path, allow)
            if method != "HEAD":
                assert answer.json()["error"] == "method_not_allowed"
            checked += 1
    assert checked > 40


def test_put_tokens_allows_post(client: TestClient) -> None:
    answer = client.put("/v1/tokens", json={})
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")


def test_cors_is_closed_by_default(client: TestClient) -> None:
    answer = client.options("/v1/tokens", headers=PREFLIGHT)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
    simple = client.get("/healthz", headers={"Origin": "https://app.example"})
    assert not [h for h in simple.headers if h.lower().startswith("access-control-")]


def test_cors_opens_to_the_configured_origins_only(make_client: AppFactory) -> None:
    client = make_client(cors_origins=["https://app.example"])
    allowed = client.options("/v1/tokens", headers=PREFLIGHT)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    methods = {m.strip() for m in allowed.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "DELETE"} <= methods
    allow_headers = allowed.headers["access-control-allow-headers"]
    headers = {h.strip().lower() for h in allow_headers.split(",")}
    assert {"authorization", "content-type", "x-csrf-token"} <= headers
    other = client.options("/v1/tokens", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert other.status_code != 200
    assert not [h for h in other.headers if h.lower().startswith("access-control-allow-origin")]
    simple = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
