"""LiveKit access tokens for clients, with the least privilege a voice call needs.

A client may join the one room its token names, publish its microphone and nothing else
(no camera, no screen share; data messages only when configured), and subscribe. It
never gets room admin, create, list or record grants, nor agent or SIP grants. The
token's room configuration dispatches our agent into the room when the client joins.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from google.protobuf.json_format import MessageToDict
from livekit.api import AccessToken, VideoGrants
from livekit.api.access_token import snake_to_lower_camel
from livekit.protocol.agent_dispatch import RoomAgentDispatch
from livekit.protocol.room import RoomConfiguration

MICROPHONE = "microphone"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    room: str
    identity: str
    expires_at: datetime


def client_grants(room: str, *, can_publish_data: bool) -> VideoGrants:
    """What a voice client may do: join `room`, publish its microphone, subscribe."""
    return VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_publish_sources=[MICROPHONE],
        can_subscribe=True,
        can_publish_data=can_publish_data,
    )


def issue_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    ttl: timedelta,
    agent_name: str,
    name: str | None = None,
    metadata: str | None = None,
    can_publish_data: bool = False,
) -> IssuedToken:
    """A signed token for `identity` in `room`, dispatching `agent_name` (if not empty).

    The claims are those `livekit.api.AccessToken.to_jwt` writes for the same grants and
    room configuration (a test holds them equal), signed the same way (PyJWT, HS256);
    built directly because `to_jwt` deep-copies its dataclasses, which costs more than
    the rest of the request."""
    now = int(time.time())
    expires = now + int(ttl.total_seconds())
    claims: dict[str, Any] = {}
    if name:
        claims["name"] = name
    if metadata:
        claims["metadata"] = metadata
    claims["video"] = {**_video_claim(can_publish_data), "room": room}
    if agent_name:
        claims["roomConfig"] = _dispatch_claim(agent_name)
    claims |= {"sub": identity, "iss": api_key, "nbf": now, "exp": expires}
    token = jwt.encode(claims, api_secret, algorithm="HS256")
    return IssuedToken(token, room, identity, datetime.fromtimestamp(expires, tz=UTC))


@functools.cache
def _video_claim(can_publish_data: bool) -> dict[str, Any]:
    """`client_grants` as `AccessToken` writes them (camelCase names, unset ones left
    out), with a placeholder room: only the room changes from token to token."""
    grants = client_grants("<room>", can_publish_data=can_publish_data)
    values = ((f.name, getattr(grants, f.name)) for f in dataclasses.fields(grants))
    return {snake_to_lower_camel(k): v for k, v in values if v is not None and v != ""}


@functools.cache
def _dispatch_claim(agent_name: str) -> dict[str, Any]:
    """`roomConfig` dispatching `agent_name`, as `AccessToken` writes a RoomConfiguration."""
    config = RoomConfiguration(agents=[RoomAgentDispatch(agent_name=agent_name)])
    claim: dict[str, Any] = MessageToDict(config)
    return claim


def reference_token(
    *, api_key: str, api_secret: str, room: str, identity: str, ttl: timedelta,
    agent_name: str, name: str | None = None, metadata: str | None = None,
    can_publish_data: bool = False,
) -> str:  # fmt: skip
    """The same token made by `livekit.api.AccessToken` (what `issue_token` must equal)."""
    token = (
        AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_ttl(ttl)
        .with_grants(client_grants(room, can_publish_data=can_publish_data))
    )
    if name:
        token.with_name(name)
    if metadata:
        token.with_metadata(metadata)
    if agent_name:
        token.with_room_config(RoomConfiguration(agents=[RoomAgentDispatch(agent_name=agent_name)]))
    return token.to_jwt()
