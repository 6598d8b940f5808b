"""`POST /v1/tokens`: a LiveKit access token for one client in one room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from pydantic import ConfigDict, Field

from turnlog.api.base import ApiModel, RequestModel, body_schema, parse_body
from turnlog.api.deps import Caller, TokensCaller
from turnlog.api.errors import (
    DependencyUnavailableError,
    InvalidRequestError,
    RateLimitedError,
    responses,
)
from turnlog.api.issuance import Issuance
from turnlog.api.livekit_tokens import issue_token
from turnlog.api.settings import ApiSettings

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"
"""Room names and identities: letters, digits and `_ . : @ -`, starting with a letter or
digit (safe in URLs, logs and LiveKit's APIs)."""
PRINTABLE: Final = r"^[^\x00-\x1f\x7f]*$"


class TokenRequest(RequestModel):
    """Who joins which room, for how long."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{
                "room": "math-room-1", "identity": "student-42", "name": "Ada",
                "metadata": '{"course": "algebra"}', "ttl_seconds": 600,
            }]
        },
    )  # fmt: skip

    room: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    """The room the token admits to (created on join if it does not exist)."""
    identity: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    """The participant's identity, unique within the room."""
    name: str | None = Field(default=None, min_length=1, max_length=128, pattern=PRINTABLE)
    """Display name shown to other participants."""
    metadata: str | None = Field(default=None, max_length=65_536)
    """Participant metadata, at most `TURNLOG_TOKEN_METADATA_MAX_LENGTH` characters
    (default 1024)."""
    ttl_seconds: int | None = Field(default=None, ge=1, le=86_400)
    """Token lifetime in seconds, within `TURNLOG_TOKEN_TTL_MIN`..`TURNLOG_TOKEN_TTL_MAX`
    (default 60..3600); default `TURNLOG_TOKEN_TTL_DEFAULT` (600)."""


class TokenResponse(ApiModel):
    """A signed LiveKit token and where to use it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{
                "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ2aWRlbyI6ey...",
                "livekit_url": "ws://127.0.0.1:7880", "room": "math-room-1",
                "identity": "student-42", "expires_at": "2025-03-01T10:10:00Z",
                "can_publish_data": True,
            }]
        }
    )  # fmt: skip

    token: str
    """The JWT to connect with: join this room, publish the microphone, subscribe."""
    livekit_url: str
    """The LiveKit server to connect to."""
    room: str
    identity: str
    expires_at: datetime
    """When the token stops admitting (UTC, whole seconds)."""
    can_publish_data: bool
    """Whether the token lets the client send data messages (typed chat on `lk.chat`);
    false: LiveKit drops them, so a client should not offer text input."""


@router.post(
    "",
    status_code=201,
    summary="Issue a LiveKit access token",
    response_model=TokenResponse,
    responses=responses(400, 401, 403, 422, 429, 503),
    openapi_extra=body_schema(TokenRequest),
)
async def create_token(request: Request, caller: TokensCaller) -> Response:
    """A token that lets one participant join one room with the least privilege a voice
    call needs: publish the microphone only, subscribe, data messages (typed chat) unless
    `TURNLOG_TOKEN_PUBLISH_DATA` is false, no admin grant of any kind. Joining dispatches the agent
    (`TURNLOG_AGENT_NAME`) into the room. The issuance is recorded (key, address, room,
    identity, times; never the token). Scope: `tokens`."""
    # The body is read here rather than by FastAPI: one pydantic-core pass over the
    # bytes instead of json.loads then validation, on the route that must be fastest.
    body = parse_body(TokenRequest, await request.body())
    services = caller.services
    settings = services.settings
    ttl = body.ttl_seconds if body.ttl_seconds is not None else settings.token_ttl_default_s
    if not settings.token_ttl_min_s <= ttl <= settings.token_ttl_max_s:
        raise InvalidRequestError(
            f"ttl_seconds must be between {settings.token_ttl_min_s} and "
            f"{settings.token_ttl_max_s}",
            field="ttl_seconds",
        )
    if body.metadata and len(body.metadata) > settings.token_metadata_max_length:
        raise InvalidRequestError(
            f"metadata must be at most {settings.token_metadata_max_length} characters",
            field="metadata",
        )
    await _count_identity(caller, body.identity)
    if not services.issuance.has_room():
        raise DependencyUnavailableError(
            "token issuances cannot be recorded at the moment", dependency="postgres"
        )
    api_key, api_secret = settings.livekit_credentials()
    issued = issue_token(
        api_key=api_key, api_secret=api_secret, room=body.room, identity=body.identity,
        ttl=timedelta(seconds=ttl), agent_name=settings.agent_name, name=body.name,
        metadata=body.metadata, can_publish_data=settings.token_can_publish_data,
    )  # fmt: skip
    services.issuance.record(Issuance(
        issued_at=datetime.now(UTC), key_id=caller.key.key_id, client_address=caller.address,
        room=issued.room, identity=issued.identity, expires_at=issued.expires_at,
        agent_name=settings.agent_name or None,
    ))  # fmt: skip
    services.metrics.tokens_issued.inc()
    answer = TokenResponse(
        token=issued.token, livekit_url=settings.livekit_url, room=issued.room,
        identity=issued.identity, expires_at=issued.expires_at,
        can_publish_data=settings.token_can_publish_data,
    )  # fmt: skip
    return Response(  # serialized here: FastAPI would validate the model a second time
        answer.model_dump_json(), status_code=201, media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip


async def _count_identity(caller: Caller, identity: str) -> None:
    """One token for `identity` with this key, within its limit (else 429)."""
    limit = caller.services.limits.per_identity
    retry_after = await limit.hit(caller.key.key_id, identity)
    if retry_after:
        raise RateLimitedError(
            f"more than {limit.per_minute} tokens a minute for this identity with this API key",
            field="identity",
            retry_after=retry_after,
        )


def document_limits(document: dict[str, Any], settings: ApiSettings) -> None:
    """Write the request's schema, with this deployment's bounds (TTL, metadata length),
    into the OpenAPI document."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["TokenRequest"] = TokenRequest.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    fields = schemas["TokenRequest"]["properties"]
    ttl = _non_null(fields["ttl_seconds"])
    ttl["minimum"], ttl["maximum"] = settings.token_ttl_min_s, settings.token_ttl_max_s
    _non_null(fields["metadata"])["maxLength"] = settings.token_metadata_max_length


def _non_null(field: dict[str, Any]) -> dict[str, Any]:
    """The schema of an optional field's value (pydantic writes `anyOf: [T, null]`)."""
    schema: dict[str, Any] = next(s for s in field["anyOf"] if s.get("type") != "null")
    return schema
