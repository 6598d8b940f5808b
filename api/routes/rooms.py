"""LiveKit rooms, through the LiveKit server API (scope `admin`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, Final, TypeVar

import aiohttp
from fastapi import APIRouter, Path, Response
from livekit import api as lkapi
from pydantic import ConfigDict, Field

from turnlog.api.base import ApiModel, RequestModel
from turnlog.api.deps import AdminCaller
from turnlog.api.errors import (
    ConflictError,
    DependencyUnavailableError,
    InvalidRequestError,
    NotFoundError,
    UpstreamError,
    responses,
)
from turnlog.api.routes.tokens import NAME_PATTERN

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/rooms", tags=["rooms"])

T = TypeVar("T")
_TIMEOUT_S: Final = 10.0
RoomName = Annotated[str, Path(min_length=1, max_length=128, pattern=NAME_PATTERN)]


class RoomCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [
            {"name": "math-room-1", "empty_timeout_s": 300, "max_participants": 4}
        ]},
    )  # fmt: skip

    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    empty_timeout_s: int | None = Field(default=None, ge=1, le=86_400)
    """Seconds the room stays open while empty (LiveKit's default when absent)."""
    max_participants: int | None = Field(default=None, ge=1, le=10_000)
    metadata: str | None = Field(default=None, max_length=65_536)


class RoomOut(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "sid": "RM_3kqZ8m", "name": "math-room-1", "empty_timeout_s": 300,
            "max_participants": 4, "created_at": "2025-03-01T10:00:00Z", "metadata": "",
            "num_participants": 0,
        }]}
    )  # fmt: skip

    sid: str
    name: str
    empty_timeout_s: int
    max_participants: int
    """0: no limit."""
    created_at: datetime
    metadata: str
    num_participants: int

    @classmethod
    def of(cls, room: lkapi.Room) -> RoomOut:
        return cls(
            sid=room.sid, name=room.name, empty_timeout_s=room.empty_timeout,
            max_participants=room.max_participants,
            created_at=datetime.fromtimestamp(room.creation_time, tz=UTC),
            metadata=room.metadata, num_participants=room.num_participants,
        )  # fmt: skip


class RoomList(ApiModel):
    items: list[RoomOut]


async def _livekit(call: Awaitable[T]) -> T:
    """Await a LiveKit server API call, its failures translated."""
    try:
        async with asyncio.timeout(_TIMEOUT_S):
            return await call
    except lkapi.TwirpError as error:
        if error.code == lkapi.TwirpErrorCode.NOT_FOUND:
            raise NotFoundError(f"LiveKit: {error.message}") from error
        if error.code == lkapi.TwirpErrorCode.ALREADY_EXISTS:
            raise ConflictError(f"LiveKit: {error.message}") from error
        if error.code == lkapi.TwirpErrorCode.INVALID_ARGUMENT:
            raise InvalidRequestError(f"LiveKit: {error.message}") from error
        logger.warning("LiveKit server API failed: %s", error)
        raise UpstreamError(f"the LiveKit server answered {error.code}") from error
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        logger.warning("LiveKit server API unreachable: %r", error)
        raise DependencyUnavailableError(
            "the LiveKit server cannot be reached", dependency="livekit"
        ) from error


@router.post(
    "", status_code=201, summary="Create a room",
    responses=responses(400, 401, 403, 409, 422, 429, 502, 503),
)  # fmt: skip
async def create_room(body: RoomCreate, caller: AdminCaller) -> RoomOut:
    """Create a LiveKit room (or return the existing one of that name, as LiveKit does).
    Scope: `admin`."""
    services = caller.services
    request = lkapi.CreateRoomRequest(
        name=body.name, empty_timeout=body.empty_timeout_s or 0,
        max_participants=body.max_participants or 0, metadata=body.metadata or "",
    )  # fmt: skip
    room = await _livekit(services.livekit().room.create_room(request))
    return RoomOut.of(room)


@router.get("", summary="List rooms", responses=responses(401, 403, 429, 502, 503))
async def list_rooms(caller: AdminCaller) -> RoomList:
    """The LiveKit server's active rooms. Scope: `admin`."""
    services = caller.services
    answer = await _livekit(services.livekit().room.list_rooms(lkapi.ListRoomsRequest()))
    return RoomList(items=[RoomOut.of(r) for r in answer.rooms])


@router.delete(
    "/{name}", status_code=204, summary="Delete a room",
    responses=responses(401, 403, 404, 422, 429, 502, 503),
)  # fmt: skip
async def delete_room(name: RoomName, caller: AdminCaller) -> Response:
    """Close a room and disconnect its participants. Scope: `admin`."""
    services = caller.services
    client = services.livekit()
    found = await _livekit(client.room.list_rooms(lkapi.ListRoomsRequest(names=[name])))
    if not found.rooms:
        raise NotFoundError(f"no room {name!r}", field="name")
    await _livekit(client.room.delete_room(lkapi.DeleteRoomRequest(room=name)))
    return Response(status_code=204)
