"""The console served at `/` from a build folder (a small fake one here): pages answer
`index.html` uncached, assets are immutable, nothing outside the folder is reachable,
the API's paths stay the API's, and a missing build answers 503 saying how to build."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory
from turnlog.api.console import _inside

pytestmark = pytest.mark.integration

INDEX = "<!doctype html><html><body><div id=root></div><script src=/assets/app-1a2b.js></script></body></html>"  # noqa: E501
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self' wss://lk.example:7443 https://lk.example:7443; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text(INDEX)
    (folder / "assets" / "app-1a2b.js").write_text("console.log('turnlog')")
    (folder / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    (folder / "assets" / "link.js").symlink_to(tmp_path / "secret.txt")
    return folder


@pytest.fixture
def console(make_client: AppFactory, dist: Path) -> TestClient:
    return make_client(console_dir=dist, livekit_url="wss://lk.example:7443")


@pytest.mark.parametrize("path", ["/", "/sessions/abc", "/talk", "/analytics", "/a/b/c?x=1"])
def test_pages_answer_the_index_uncached_with_the_console_csp(
    console: TestClient, path: str
) -> None:
    answer = console.get(path)
    assert answer.status_code == 200
    assert answer.text == INDEX
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY"
    assert console.head(path).status_code == 200


def test_a_browser_that_accepts_gzip_gets_the_precompressed_copy(
    console: TestClient, dist: Path
) -> None:
    script = dist / "assets" / "app-1a2b.js"
    (script.parent / (script.name + ".gz")).write_bytes(gzip.compress(script.read_bytes()))
    (dist / "index.html.gz").write_bytes(gzip.compress(INDEX.encode()))
    for path, body, kind in (("/assets/app-1a2b.js", script.read_text(), "text/javascript"),
                             ("/sessions/abc", INDEX, "text/html")):  # fmt: skip
        packed = console.get(path, headers={"Accept-Encoding": "gzip, br"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["vary"] == "Accept-Encoding"
        assert packed.headers["content-type"].startswith(kind)
        assert packed.text == body  # the client decodes it
        plain = console.get(path, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert (plain.text, plain.headers["vary"]) == (body, "Accept-Encoding")
    assert console.get("/", headers={"Accept-Encoding": "gzip"}).headers[
        "content-security-policy"
    ] == CSP


def test_assets_are_immutable_and_unknown_ones_404(console: TestClient) -> None:
    answer = console.get("/assets/app-1a2b.js")
    assert answer.status_code == 200
    assert answer.text == "console.log('turnlog')"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    missing = console.get("/assets/nope.js")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    other = console.get("/favicon.svg")
    assert (other.status_code, other.text) == (200, "<svg/>")
    assert other.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/assets/link.js",  # a link out of the folder
        "/assets/%00.js",
    ],
)
def test_nothing_outside_the_build_is_served(console: TestClient, path: str) -> None:
    # (The HTTP client may resolve dot segments first: then it asks for a page.)
    for tried in (path, path.replace("/assets/", "/x/")):
        answer = console.get(tried)
        assert "outside" not in answer.text
        assert answer.status_code == 404 or answer.text == INDEX, tried


def test_files_resolve_inside_the_folder_only(dist: Path) -> None:
    root = dist.resolve()
    assert _inside(root, "assets/app-1a2b.js") == root / "assets" / "app-1a2b.js"
    for relative in ("../secret.txt", "assets/../../secret.txt", "assets/link.js", "/etc/passwd",
                     "assets", "", "a\x00b"):  # fmt: skip
        assert _inside(root, relative) is None, relative


def test_the_api_paths_stay_the_apis(console: TestClient) -> None:
    for path in ("/v1", "/v1/nope", "/docs/x", "/metrics/x", "/healthz/x"):
        answer = console.get(path)
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found"), path
    assert console.get("/healthz").json() == {"status": "ok"}
    put = console.put("/v1/tokens")
    assert (put.status_code, put.headers["allow"]) == (405, "POST")
    post = console.post("/sessions/abc")
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
    assert console.post("/v1/nope").status_code == 404


def test_a_missing_build_answers_503_with_how_to_build(
    make_client: AppFactory, tmp_path: Path
) -> None:
    client = make_client(console_dir=tmp_path / "nothing")
    for path in ("/", "/sessions/abc"):
        answer = client.get(path)
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("text/html")
        assert "make install" in answer.text
        assert answer.headers["cache-control"] == "no-store"
    assert client.get("/healthz").status_code == 200


def test_the_default_folder_is_the_repositorys_console_build(client: TestClient) -> None:
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    assert settings.console_dir == Path(__file__).resolve().parents[2] / "console" / "dist"
