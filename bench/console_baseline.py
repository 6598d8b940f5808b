"""The console benchmark's baselines, served by a bare Starlette app: the console's login
form as one hand-written static HTML document (inline style, no script) at `/`, and at
`/sse` a recorded live stream (the file `BENCH_SSE_FILE`) answered in one piece.

    BENCH_SSE_FILE=/tmp/stream.txt uvicorn bench.console_baseline:app
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

LOGIN_PAGE: Final = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>Turnlog console</title>
    <style>
      body { font-family: system-ui, sans-serif; margin: 0; background: #f6f7f9; }
      .login { display: grid; place-items: center; min-height: 100vh; }
      .card { background: #fff; border: 1px solid #dde; border-radius: 8px; padding: 24px; }
      .login-card { display: grid; gap: 8px; width: 360px; }
      .muted { color: #667; }
    </style>
  </head>
  <body>
    <main class="login">
      <form class="card login-card" aria-labelledby="login-title">
        <h1 id="login-title">Turnlog console</h1>
        <p class="muted">Sign in with an API key with the <code>read</code> scope.</p>
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autocomplete="off" placeholder="tlk_…" required />
        <button type="submit">Sign in</button>
      </form>
    </main>
  </body>
</html>
"""


async def login_page(_: object) -> HTMLResponse:
    return HTMLResponse(LOGIN_PAGE, headers={"Cache-Control": "no-cache"})


@cache
def _recorded() -> bytes:
    return Path(os.environ["BENCH_SSE_FILE"]).read_bytes()


async def recorded_stream(_: object) -> Response:
    return Response(_recorded(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/", login_page),
        Route("/healthz", login_page),
        Route("/sse", recorded_stream),
    ]
)
