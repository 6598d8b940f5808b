"""The web console: the built single-page app of `console/dist`, served at `/`.

Not a route: the router's fallback, so it answers only what no API route matches, and a
405 of an API route stays a 405. `/assets/*` are content-hashed build outputs, cached for
a year; any other path that is not a file of the build (a page of the app such as
`/sessions/abc`) answers `index.html`, never cached. A browser that accepts gzip gets the
build's precompressed copy (`<file>.gz`, written by the console's build). Paths under the
API's own prefixes (`/v1`, `/docs`, ...) are 404. Files resolve inside the build folder
only. Without a build the console answers 503 with how to make one.
"""

from __future__ import annotations

import mimetypes
import urllib.parse
from pathlib import Path
from typing import Final

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse
from starlette.types import Receive, Scope, Send

API_PREFIXES: Final = ("/v1", "/metrics", "/healthz", "/readyz", "/docs", "/openapi.json")
NO_CACHE: Final = "no-cache"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
_NOT_BUILT: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Turnlog console not built</title></head>
<body><h1>The Turnlog console is not built</h1>
<p>The API serves the console from <code>{folder}</code>, which has no
<code>index.html</code>. Build it with <code>make install</code> (or
<code>cd console &amp;&amp; npm ci &amp;&amp; npm run build</code>), then reload this page;
or point <code>TURNLOG_API_CONSOLE_DIR</code> at a build.</p>
<p>The API itself works: see <a href="/docs">/docs</a>.</p></body></html>
"""


def console_csp(livekit_url: str) -> str:
    """The console page's Content-Security-Policy: its own scripts and styles (inline
    styles too: the UI library sets some), media from the microphone and LiveKit,
    connections to this API and to the LiveKit server."""
    parts = urllib.parse.urlsplit(livekit_url)
    secure = parts.scheme in ("wss", "https")
    ws = f"{'wss' if secure else 'ws'}://{parts.netloc}"
    http = f"{'https' if secure else 'http'}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
        f"connect-src 'self' {ws} {http}; worker-src 'self' blob:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class ConsoleApp:
    """The ASGI fallback that serves the console; see the module doc."""

    def __init__(self, folder: Path, *, csp: str) -> None:
        self._folder = folder
        self._csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        if scope["type"] != "http" or _is_api(path):
            raise HTTPException(404, "no such route")
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(
                405, "the console's pages are read with GET", {"Allow": "GET, HEAD"}
            )
        root = self._folder.resolve()
        index = root / "index.html"
        if not index.is_file():
            page = _NOT_BUILT.format(folder=self._folder)
            response = HTMLResponse(page, status_code=503, headers=self._headers("no-store"))
            response.headers["Retry-After"] = "30"
            await response(scope, receive, send)
            return
        file = _inside(root, path.lstrip("/"))
        if path.startswith("/assets/"):
            if file is None:
                raise HTTPException(404, "no such console asset")
            await _file(scope, file, {"Cache-Control": IMMUTABLE})(scope, receive, send)
            return
        target = file if file is not None and file.name != "index.html" else index
        headers = self._headers(NO_CACHE) if target == index else {"Cache-Control": NO_CACHE}
        await _file(scope, target, headers)(scope, receive, send)

    def _headers(self, cache: str) -> dict[str, str]:
        return {"Cache-Control": cache, "Content-Security-Policy": self._csp}


def _file(scope: Scope, file: Path, headers: dict[str, str]) -> FileResponse:
    """`file`, or its precompressed copy when there is one and the client accepts gzip."""
    packed = file.with_name(file.name + ".gz")
    if not packed.is_file():
        return FileResponse(file, headers=headers)
    headers = {**headers, "Vary": "Accept-Encoding"}
    accepted = b"".join(v for k, v in scope.get("headers", ()) if k == b"accept-encoding")
    if b"gzip" not in accepted:
        return FileResponse(file, headers=headers)
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return FileResponse(
        packed, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"}
    )


def _is_api(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def _inside(root: Path, relative: str) -> Path | None:
    """The file `relative` names inside `root` (links resolved), or None."""
    if not relative or "\x00" in relative:
        return None
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    return candidate if candidate.is_relative_to(root) and candidate.is_file() else None
