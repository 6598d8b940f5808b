"""The interactive API docs (`/docs`, Swagger UI) under a strict Content-Security-Policy.

The page loads Swagger UI from its CDN and runs one inline script; the policy allows that
CDN and that script (by its hash) and nothing else: no other script, frame, form or
connection but to this API.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

_CDN: Final = "https://cdn.jsdelivr.net"
_PAGE: Final = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="Turnlog API").body)


def _script_hashes(page: bytes) -> str:
    scripts = re.findall(rb"<script>(.*?)</script>", page, flags=re.DOTALL)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts
    )


PAGE_CSP: Final = (
    f"default-src 'none'; script-src {_CDN} {_script_hashes(_PAGE)}; style-src {_CDN}; "
    f"img-src {_CDN} https://fastapi.tiangolo.com data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""The policy of the docs page (every other response gets `default-src 'none'`)."""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(_PAGE)
