"""`uvicorn turnlog.api.main:app`: the app of the environment's settings.

`app` is made on first access (PEP 562), not at import: importing this module reads no
environment and opens nothing.
"""

from __future__ import annotations

from typing import Any

from turnlog.api.app import create_app
from turnlog.api.settings import load_api_settings

_app: Any = None


def __getattr__(name: str) -> Any:
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app(load_api_settings())
    return _app
