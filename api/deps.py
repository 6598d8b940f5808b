"""Dependencies of the routes, as `Annotated` aliases: the services, and the API key a
route needs (`Authorization: Bearer <key>` with a scope), rate-limited per key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ForbiddenError, RateLimitedError, UnauthenticatedError
from api.keys import KEY_PREFIX, ApiKey, Scope
from api.services import Services

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`tlk_...`) with the route's scope: `tokens`, `read` or `admin`.",
)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_address(request: Request) -> str:
    """The caller's address (uvicorn takes it from X-Forwarded-For for trusted proxies)."""
    return request.client.host if request.client is not None else "unknown"


async def authenticate(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    if credentials is None:
        raise UnauthenticatedError("send an API key: Authorization: Bearer <key>")
    presented = credentials.credentials
    if not presented.startswith(KEY_PREFIX) or len(presented) > 128:
        raise UnauthenticatedError("the API key is not valid")
    hit, key = services.keys.cached(presented)
    if not hit:
        key = await services.db.run(services.keys.lookup, presented)
    if key is None:
        raise UnauthenticatedError("the API key is not valid")
    retry_after = services.per_key.acquire(key.key_id)
    if retry_after:
        raise RateLimitedError(
            f"more than {services.per_key.per_minute} requests a minute with this API key",
            retry_after=retry_after,
        )
    return key


def require(scope: Scope) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency that admits keys with `scope`."""

    async def with_scope(key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
        if scope not in key.scopes:
            raise ForbiddenError(f"this route needs an API key with the {scope!r} scope")
        return key

    return with_scope


TokensKey = Annotated[ApiKey, Depends(require("tokens"))]
ReadKey = Annotated[ApiKey, Depends(require("read"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not declare, or one given twice (every parameter
    is a single value), is an error (422), not ignored: a misspelt filter must not
    silently list everything."""
    if not request.query_params:
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
