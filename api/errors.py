"""The one exception hierarchy of `api`, and the JSON error body every failure answers.

Each `ApiError` carries its HTTP status and a stable machine-readable `reason`; its
message is written for the caller and never holds a secret or a stack trace. Errors of
the other packages are translated into these at the routes (`raise ... from e`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from turnlog.api.base import ApiModel


class ApiError(Exception):
    """Base of every error raised by `api`."""

    status_code: ClassVar[int] = 500
    reason: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}


class ConfigurationError(ApiError):
    """The settings are invalid; `variables` names the environment variables at fault."""

    reason = "configuration_error"

    def __init__(self, message: str, *, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables


class InvalidRequestError(ApiError):
    """The request is well-formed but a value is not acceptable (named by `field`)."""

    status_code = 400
    reason = "invalid_request"


class UnauthenticatedError(ApiError):
    """No API key, or one that is unknown or revoked."""

    status_code = 401
    reason = "unauthenticated"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(ApiError):
    """The API key lacks the scope the route needs."""

    status_code = 403
    reason = "forbidden"


class CsrfError(ForbiddenError):
    """A console session's unsafe request without its CSRF token."""

    reason = "csrf_failed"


class NotFoundError(ApiError):
    status_code = 404
    reason = "not_found"


class ConflictError(ApiError):
    status_code = 409
    reason = "conflict"


class RateLimitedError(ApiError):
    """Too many requests; `retry_after` is the whole seconds until one is allowed again."""

    status_code = 429
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class DependencyUnavailableError(ApiError):
    """A store or service the request needs cannot be reached (named by `dependency`)."""

    status_code = 503
    reason = "dependency_unavailable"

    def __init__(self, message: str, *, dependency: str) -> None:
        super().__init__(message, headers={"Retry-After": "5"})
        self.dependency = dependency


class UpstreamError(ApiError):
    """A dependency answered with a failure that is not the caller's."""

    status_code = 502
    reason = "upstream_error"


# --- the body of every error response ------------------------------------------------


class FieldError(ApiModel):
    """One invalid input value."""

    field: str = Field(examples=["body.identity"])
    """Where the value is: `body.<name>`, `query.<name>`, `path.<name>` or `header.<name>`."""
    message: str = Field(examples=["String should have at most 128 characters"])
    type: str = Field(examples=["string_too_long"])
    """pydantic's error type."""


class ErrorBody(ApiModel):
    """What every 4xx and 5xx answers."""

    error: str = Field(examples=["invalid_request"])
    """Stable reason code: `validation_failed`, `invalid_request`, `unauthenticated`,
    `forbidden`, `csrf_failed`, `not_found`, `method_not_allowed`, `conflict`, `rate_limited`,
    `dependency_unavailable`, `upstream_error`, `internal_error`."""
    message: str = Field(examples=["ttl_seconds must be between 60 and 3600"])
    """What went wrong, for a person."""
    field: str | None = Field(default=None, examples=["ttl_seconds"])
    """The input at fault, when there is one."""
    fields: list[FieldError] | None = None
    """Every invalid value (validation failures)."""
    dependency: str | None = Field(default=None, examples=["postgres"])
    """The dependency that failed (503)."""
    retry_after: int | None = Field(default=None, examples=[6])
    """Seconds to wait before retrying (429), also in the `Retry-After` header."""


def error_body(error: ApiError) -> dict[str, Any]:
    body = ErrorBody(error=error.reason, message=error.message, field=error.field)
    if isinstance(error, DependencyUnavailableError):
        body.dependency = error.dependency
    if isinstance(error, RateLimitedError):
        body.retry_after = error.retry_after
    return body.model_dump(exclude_none=True)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route may answer."""
    described = {
        400: "A value is not acceptable",
        401: "No API key, or an unknown or revoked one",
        403: "The API key lacks the route's scope, or a console session's CSRF token is "
        "missing (`csrf_failed`)",
        404: "Unknown id",
        409: "Conflicts with what exists",
        422: "The request does not validate (every invalid field is named)",
        429: "Rate limited: retry after `Retry-After` seconds",
        502: "A dependency answered with a failure",
        503: "A dependency cannot be reached",
    }
    return {s: {"model": ErrorBody, "description": described[s]} for s in statuses}
