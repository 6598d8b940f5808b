"""Console login: `POST /v1/auth/login` trades an API key for a session cookie (and a
CSRF token), `GET /v1/auth/session` says who is logged in, `POST /v1/auth/logout` ends it.

The cookie is `HttpOnly; SameSite=Strict; Path=/` (and `Secure` over https): scripts
cannot read it and other sites cannot make a browser send it. A login from a page of
another origin than the API's own (or `TURNLOG_API_CORS_ORIGINS`) is refused.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ConfigDict, Field

from turnlog.api.base import ApiModel, RequestModel, body_schema, parse_body
from turnlog.api.console_sessions import COOKIE_NAME, ConsoleSession, cookie_header
from turnlog.api.deps import (
    ServicesDep,
    client_address,
    console_session,
    count_failure,
    count_key,
    key_of,
    refuse_failing_address,
    reject_unknown_query,
)
from turnlog.api.errors import ForbiddenError, RateLimitedError, UnauthenticatedError, responses
from turnlog.api.keys import SCOPES
from turnlog.api.services import Services

router = APIRouter(
    prefix="/v1/auth", tags=["console"], dependencies=[Depends(reject_unknown_query)]
)


class LoginRequest(RequestModel):
    """The API key the console session stands for."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"api_key": "tlk_..."}]})

    api_key: str = Field(min_length=1, max_length=256)


class SessionOut(ApiModel):
    """The logged-in key and the session's CSRF token."""

    key_name: str
    """The name the key was given."""
    scopes: list[str]
    """What the session may do: `tokens`, `read`, `admin`."""
    csrf_token: str
    """Send it as `X-CSRF-Token` with every POST, PUT, PATCH and DELETE of the session."""
    expires_at: datetime
    """When the session ends (UTC)."""


def _answer(
    session: ConsoleSession, *, status_code: int = 200, set_cookie: str | None = None
) -> Response:
    body = SessionOut(
        key_name=session.key.name,
        scopes=[s for s in SCOPES if s in session.key.scopes],
        csrf_token=session.csrf_token,
        expires_at=session.expires_at,
    )
    headers = {"Cache-Control": "no-store"}
    if set_cookie is not None:
        headers["Set-Cookie"] = set_cookie
    return Response(
        body.model_dump_json(), status_code=status_code, media_type="application/json",
        headers=headers,
    )  # fmt: skip


def _refuse_cross_site(request: Request, services: Services) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own and origin not in services.settings.cors_origins:
        raise ForbiddenError(
            "a console login is accepted only from this API's own origin or "
            "TURNLOG_API_CORS_ORIGINS"
        )


@router.post(
    "/login",
    summary="Log the console in with an API key",
    response_model=SessionOut,
    responses=responses(401, 403, 422, 429, 503),
    openapi_extra=body_schema(LoginRequest),
)
async def login(request: Request, services: ServicesDep) -> Response:
    """Checks the key and answers the session (200) with `Set-Cookie: turnlog_session=...;
    HttpOnly; SameSite=Strict; Path=/; Max-Age=<TURNLOG_API_CONSOLE_SESSION_TTL>` (plus
    `Secure` over https). Logins are limited per client address, and failed ones count
    toward its failed authentications. No API key needed."""
    _refuse_cross_site(request, services)
    address = client_address(request)
    await refuse_failing_address(services, address)
    body = parse_body(LoginRequest, await request.body())
    limit = services.limits.per_address
    retry_after = await limit.hit(address)
    if retry_after:
        raise RateLimitedError(
            f"more than {limit.per_minute} logins a minute from this address",
            retry_after=retry_after,
        )
    try:
        key = await key_of(services, body.api_key, address)
    except UnauthenticatedError:
        await count_failure(services, address)
        raise
    await count_key(services, key)
    ttl = services.settings.console_session_ttl_s
    cookie, session = await services.db.run(services.console_sessions.create, key, ttl_s=ttl)
    secure = request.url.scheme == "https"
    return _answer(session, set_cookie=cookie_header(cookie, max_age=ttl, secure=secure))


@router.get(
    "/session",
    summary="The console session of the cookie",
    response_model=SessionOut,
    responses=responses(401, 429, 503),
)
async def current_session(request: Request, services: ServicesDep) -> Response:
    """The logged-in key, its scopes and the session's CSRF token; 401 without a live
    session (none, expired, logged out, or its key revoked)."""
    session = await console_session(request, services, client_address(request))
    await count_key(services, session.key)
    return _answer(session)


@router.post(
    "/logout",
    summary="End the console session",
    status_code=204,
    response_class=Response,
    responses=responses(401, 403, 429, 503),
)
async def logout(request: Request, services: ServicesDep) -> Response:
    """Deletes the session and clears the cookie. Needs `X-CSRF-Token`."""
    session = await console_session(request, services, client_address(request))
    await count_key(services, session.key)
    await services.db.run(services.console_sessions.end, request.cookies.get(COOKIE_NAME, ""))
    secure = request.url.scheme == "https"
    return Response(
        status_code=204, headers={"Set-Cookie": cookie_header("", max_age=0, secure=secure)}
    )
