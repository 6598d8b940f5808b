"""LiveKit access tokens for clients, with the least privilege a voice call needs.

A client may join the one room its token names, publish its microphone and nothing else
(no camera, no screen share; data messages only when configured), and subscribe. It
never gets room admin, create, list or record grants, nor agent or SIP grants. The
token's room configuration dispatches our agent into the room when the client joins.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from livekit.api import AccessToken, VideoGrants
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
    """A signed token for `identity` in `room`, dispatching `agent_name` (if not empty)."""
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
    jwt = token.to_jwt()
    return IssuedToken(jwt, room, identity, _expiry(jwt))


def _expiry(jwt: str) -> datetime:
    """The `exp` the token was signed with (to the second, as LiveKit writes it)."""
    payload = jwt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
