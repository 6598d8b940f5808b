"""Dependencies of the routes, as `Annotated` aliases: the services, and the API key a
route needs (`Authorization: Bearer <key>`, or a console session's cookie plus its CSRF
token for unsafe methods) with a scope, rate-limited per key, and the failed
authentications limited per address."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

from turnlog.api.console_sessions import (
    COOKIE_NAME,
    CSRF_HEADER,
    SAFE_METHODS,
    ConsoleSession,
    csrf_matches,
)
from turnlog.api.errors import CsrfError, ForbiddenError, RateLimitedError, UnauthenticatedError
from turnlog.api.keys import KEY_PREFIX, ApiKey, Scope
from turnlog.api.services import Services

SECURITY_SCHEMES: Final = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`tlk_...`) with the route's scope: `tokens`, `read` or "
        "`admin`.",
    },
    "ConsoleSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE_NAME,
        "description": "The cookie `POST /v1/auth/login` sets: the key it logged in with. "
        f"POST, PUT, PATCH and DELETE also need the header `{CSRF_HEADER}` with the "
        "session's `csrf_token` (else 403 `csrf_failed`).",
    },
}
"""How the OpenAPI document describes the credentials, on every `/v1` operation."""


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_address(request: Request) -> str:
    """The caller's address (uvicorn takes it from X-Forwarded-For for trusted proxies)."""
    return request.client.host if request.client is not None else "unknown"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: an API key with the route's scope, and the app's services."""

    key: ApiKey
    services: Services
    address: str


async def authenticate(services: Services, authorization: str | None, address: str) -> ApiKey:
    """The active key of an `Authorization: Bearer <key>` header."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise UnauthenticatedError(
            "send an API key (Authorization: Bearer <key>) or log in to the console"
        )
    return await key_of(services, presented, address)


async def key_of(services: Services, presented: str, address: str) -> ApiKey:
    """The active key `presented`. A key the cache knows valid is no guess: only the
    others wait while the address is over its failures."""
    if not presented.startswith(KEY_PREFIX) or len(presented) > 128:
        raise UnauthenticatedError("the API key is not valid")
    hit, key = services.keys.cached(presented)
    if hit and key is not None:
        return key
    await refuse_failing_address(services, address)
    if not hit:
        key = await services.db.run(services.keys.lookup, presented)
    if key is None:
        raise UnauthenticatedError("the API key is not valid")
    return key


async def console_session(request: Request, services: Services, address: str) -> ConsoleSession:
    """The live console session of the request's cookie; for an unsafe method, only with
    its CSRF token in `X-CSRF-Token` (403 `csrf_failed` otherwise)."""
    cookie = request.cookies.get(COOKIE_NAME, "")
    if not cookie or len(cookie) > 128:
        raise UnauthenticatedError("no console session: log in with an API key")
    hit, session = services.console_sessions.cached(cookie)
    if not (hit and session is not None):
        await refuse_failing_address(services, address)
        if not hit:
            session = await services.db.run(services.console_sessions.lookup, cookie)
    if session is None:
        raise UnauthenticatedError("the console session has ended or expired: log in again")
    if request.method not in SAFE_METHODS and not csrf_matches(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise CsrfError(
            f"a console session's {request.method} needs the header {CSRF_HEADER} with the "
            "session's csrf_token (given by /v1/auth/login and /v1/auth/session)"
        )
    return session


async def refuse_failing_address(services: Services, address: str) -> None:
    """429 for an address over its allowance of failed authentications."""
    failing = await services.limits.auth_failures.wait(address)
    if failing:
        raise RateLimitedError(
            "too many requests without a valid API key from this address",
            retry_after=failing,
        )


async def count_failure(services: Services, address: str) -> None:
    """A failed authentication from `address` (429 if it is over its allowance)."""
    await refuse_failing_address(services, address)
    await services.limits.auth_failures.hit(address)


async def count_key(services: Services, key: ApiKey) -> None:
    """One request of `key`, within its limit (else 429)."""
    limit = services.limits.per_key
    retry_after = await limit.hit(key.key_id)
    if retry_after:
        raise RateLimitedError(
            f"more than {limit.per_minute} requests a minute with this API key",
            retry_after=retry_after,
        )


def require(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """The dependency of a route that admits API keys with `scope`, presented in the
    `Authorization` header or through a console session's cookie. One dependency does
    it all (query check, failure limit, key, scope, key limit): each FastAPI dependency
    costs tens of microseconds per request. The address is limited only while it fails
    to authenticate: a backend minting tokens for its users is limited per key and per
    identity, not per address."""

    async def caller(request: Request) -> Caller:
        check_query(request)
        services: Services = request.app.state.services
        address = client_address(request)
        authorization = request.headers.get("authorization")
        try:
            if authorization is None and COOKIE_NAME in request.cookies:
                key = (await console_session(request, services, address)).key
            else:
                key = await authenticate(services, authorization, address)
        except UnauthenticatedError:
            await count_failure(services, address)
            raise
        if scope not in key.scopes:
            raise ForbiddenError(f"this route needs an API key with the {scope!r} scope")
        await count_key(services, key)
        return Caller(key, services, address)

    return caller


TokensCaller = Annotated[Caller, Depends(require("tokens"))]
ReadCaller = Annotated[Caller, Depends(require("read"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def reject_unknown_query(request: Request) -> None:
    """`check_query` as a dependency (for the routes without an API key)."""
    check_query(request)


def check_query(request: Request) -> None:
    """A query parameter the route does not declare, or one given twice (every parameter
    is a single value), is an error (422), not ignored: a misspelt filter must not
    silently list everything. So is a NUL character in a path or query value: no store
    can hold one (PostgreSQL refuses it), and it must not reach one as a 500."""
    nul = [
        {"loc": (where, name), "msg": "must not contain a NUL character", "type": "nul_char"}
        for where, values in (("path", request.path_params.items()),
                              ("query", request.query_params.multi_items()))
        for name, value in values if isinstance(value, str) and "\x00" in value
    ]  # fmt: skip
    if nul:
        raise RequestValidationError(nul)
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = _QUERY_NAMES[id(route)] = _query_names(dependant)
    problems = [
        {"loc": ("query", name), "msg": "is not a parameter of this route",
         "type": "extra_forbidden"}
        for name in request.query_params if name not in names
    ] + [
        {"loc": ("query", name), "msg": "is given more than once", "type": "repeated"}
        for name in names if len(request.query_params.getlist(name)) > 1
    ]  # fmt: skip
    if problems:
        raise RequestValidationError(problems)
