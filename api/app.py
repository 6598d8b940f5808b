"""The FastAPI application: routers per resource, error handlers, middleware, lifespan.

`create_app(settings)` builds it; `turnlog.api.main:app` is the app of the environment's
settings for `uvicorn turnlog.api.main:app`. Tests pass their own settings (and the analytics
store their process owns).
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from turnlog.api import docs
from turnlog.api.console import ConsoleApp, console_csp
from turnlog.api.deps import SECURITY_SCHEMES
from turnlog.api.errors import ApiError, ErrorBody, FieldError, error_body
from turnlog.api.keys import insert_key
from turnlog.api.middleware import ApiMetrics, ResponseMiddleware
from turnlog.api.routes import analytics, auth, erasures, health, rooms, sessions, tokens
from turnlog.api.services import Services
from turnlog.api.settings import ApiSettings
from turnlog.projections.clickhouse.store import AnalyticsStore

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Turnlog's HTTP API: LiveKit access tokens for clients, the conversation read models
(sessions, transcripts, event histories, live events), analytics, and LiveKit rooms.

Authenticate with an API key: `Authorization: Bearer tlk_...`, or, in the console, with
the session cookie `POST /v1/auth/login` sets (then POST, PUT, PATCH and DELETE also need
`X-CSRF-Token: <csrf_token>`). Keys have scopes:
`tokens` (clients' backends), `read` (read models and analytics), `admin` (rooms and
analysts' SQL). Errors answer a JSON body with a stable `error` code and the `field` at
fault; 429 and 503 carry `Retry-After`.
"""

TOKEN_PATH = "/v1/tokens"  # noqa: S105 (a path, not a secret)


def create_app(settings: ApiSettings, *, analytics_store: AnalyticsStore | None = None) -> FastAPI:
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.create(settings, metrics=metrics, analytics_store=analytics_store)
        await services.start()
        app.state.services = services
        if settings.dev_mode:
            await _announce_dev_key(services)
        # What start-up made (modules, schemas, pools) lives as long as the process: out
        # of the collector's sight, full collections stay short (fewer p99 outliers).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="Turnlog API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses={
            500: {"model": ErrorBody, "description": "The request failed (logged, no detail)"}
        },
    )
    for router in (
        tokens.router, erasures.router, sessions.router, analytics.router, rooms.router,
        auth.router, health.router, docs.router,
    ):  # fmt: skip
        app.include_router(router)
    app.router.default = ConsoleApp(
        settings.console_dir, csp=console_csp(settings.livekit_url)
    )  # what no route matches
    _document_limits(app, settings)
    _add_error_handlers(app, metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
            max_age=600,
        )
    app.add_middleware(ResponseMiddleware, metrics=metrics, page_csp=docs.PAGE_CSP)
    return app


def _document_limits(app: FastAPI, settings: ApiSettings) -> None:
    """The OpenAPI document states this deployment's configured bounds."""
    make_document = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = make_document()
            _document_security(document)
            tokens.document_limits(document, settings)
            analytics.document_limits(document, settings)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_security(document: dict[str, Any]) -> None:
    """Every `/v1` operation needs an API key or a console session (checked by
    `deps.require`), except the console's login (none) and session routes (the cookie)."""
    document.setdefault("components", {}).setdefault("securitySchemes", {}).update(
        {name: dict(scheme) for name, scheme in SECURITY_SCHEMES.items()}
    )
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for operation in operations.values():
            if path == "/v1/auth/login":
                operation["security"] = []
            elif path.startswith("/v1/auth/"):
                operation["security"] = [{"ConsoleSession": []}]
            else:
                operation["security"] = [{"ApiKey": []}, {"ConsoleSession": []}]


async def _announce_dev_key(services: Services) -> None:
    """Development mode: a fresh key with every scope, shown once on the console."""
    key, _ = await services.db.run(
        insert_key, name="dev", scopes=["tokens", "read", "admin"], schema=services.db.schema
    )
    print(
        f"Turnlog API development key (scopes tokens, read, admin): {key}",
        file=sys.stderr, flush=True,
    )  # fmt: skip


_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on the request's path, asked of the routes
    themselves (`matches` with each method, on a scope of the path alone: the request's
    carries what FastAPI decided for it). FastAPI nests included routers, whose entries
    have no `methods` of their own, and Starlette names only the first route's."""
    scope = request.scope
    probe = {"type": "http", "path": scope["path"], "root_path": scope.get("root_path", "")}
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**probe, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


def _add_error_handlers(app: FastAPI, metrics: ApiMetrics) -> None:
    def answer(
        request: Request, status: int, body: dict[str, Any], headers: dict[str, str]
    ) -> JSONResponse:
        if request.url.path == TOKEN_PATH and status >= 400:
            metrics.tokens_refused.labels(body["error"]).inc()
        return JSONResponse(body, status_code=status, headers=headers or None)

    async def api_error(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, ApiError):  # pragma: no cover - registered for ApiError
            raise error
        return answer(request, error.status_code, error_body(error), error.headers)

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, RequestValidationError):  # pragma: no cover
            raise error
        fields = [
            FieldError(
                field=".".join(str(part) for part in detail["loc"]),
                message=str(detail["msg"]).removeprefix("Value error, "),
                type=str(detail["type"]),
            )
            for detail in error.errors()
        ]
        first = fields[0] if fields else None
        body = ErrorBody(
            error="validation_failed",
            message=f"{first.field}: {first.message}" if first else "the request is invalid",
            field=first.field if first else None,
            fields=fields,
        )
        return answer(request, 422, body.model_dump(exclude_none=True), {})

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, StarletteHTTPException):  # pragma: no cover
            raise error
        reason = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        body = ErrorBody(error=reason, message=str(error.detail))
        headers = dict(error.headers or {})
        if error.status_code == 405:  # Starlette's names the first route's methods only
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return answer(request, error.status_code, body.model_dump(exclude_none=True), headers)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
