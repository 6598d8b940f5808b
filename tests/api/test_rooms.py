"""Rooms through a real LiveKit server: create, list, delete; and a client token the
server accepts for its room only."""

from __future__ import annotations

import asyncio

import pytest
from livekit import api as lkapi
from livekit import rtc

from tests.api.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, AppFactory, Keys

pytestmark = pytest.mark.integration


def test_create_list_delete_rooms(make_client: AppFactory, keys: Keys, livekit_server: str) -> None:
    client = make_client(livekit_url=livekit_server)
    auth = keys.auth(keys.admin)
    created = client.post("/v1/rooms", json={"name": "api-room-1", "empty_timeout_s": 120,
                                             "max_participants": 3}, headers=auth)  # fmt: skip
    assert created.status_code == 201, created.text
    room = created.json()
    assert (room["name"], room["empty_timeout_s"], room["max_participants"]) == (
        "api-room-1",
        120,
        3,
    )
    assert room["sid"].startswith("RM_")
    listed = client.get("/v1/rooms", headers=auth).json()["items"]
    assert "api-room-1" in [r["name"] for r in listed]
    assert client.delete("/v1/rooms/api-room-1", headers=auth).status_code == 204
    assert "api-room-1" not in [
        r["name"] for r in client.get("/v1/rooms", headers=auth).json()["items"]
    ]
    missing = client.delete("/v1/rooms/api-room-1", headers=auth)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_rooms_need_the_admin_scope_and_valid_names(
    make_client: AppFactory, keys: Keys, livekit_server: str
) -> None:
    client = make_client(livekit_url=livekit_server)
    for key in (keys.read, keys.tokens):
        assert client.get("/v1/rooms", headers=keys.auth(key)).status_code == 403
    bad = client.post("/v1/rooms", json={"name": "no spaces"}, headers=keys.auth(keys.admin))
    assert (bad.status_code, bad.json()["field"]) == (422, "body.name")


def test_an_unreachable_livekit_server_is_503(make_client: AppFactory, keys: Keys) -> None:
    client = make_client(livekit_url="ws://127.0.0.1:1")
    answer = client.get("/v1/rooms", headers=keys.auth(keys.admin))
    assert (answer.status_code, answer.json()["dependency"]) == (503, "livekit")


def test_the_server_admits_a_client_token_to_its_room_only(
    make_client: AppFactory, keys: Keys, livekit_server: str
) -> None:
    client = make_client(livekit_url=livekit_server)
    issued = client.post("/v1/tokens", json={"room": "joined-room", "identity": "student-1"},
                         headers=keys.auth(keys.tokens)).json()  # fmt: skip
    assert issued["livekit_url"] == livekit_server

    async def join_and_check() -> None:
        room = rtc.Room()
        await room.connect(issued["livekit_url"], issued["token"])
        try:
            assert room.name == "joined-room"
            assert room.local_participant.identity == "student-1"
            permissions = room.local_participant.permissions
            assert permissions.can_publish
            assert permissions.can_subscribe
            assert permissions.can_publish_data  # typed chat to the agent
            assert list(permissions.can_publish_sources) == [rtc.TrackSource.SOURCE_MICROPHONE]
            server = lkapi.LiveKitAPI(livekit_server.replace("ws://", "http://"),
                                      LIVEKIT_KEY, LIVEKIT_SECRET)  # fmt: skip
            try:
                present = await server.room.list_participants(
                    lkapi.ListParticipantsRequest(room="joined-room")
                )
                assert [p.identity for p in present.participants] == ["student-1"]
                # Joining with the token dispatched our agent into the room.
                dispatches = await server.agent_dispatch.list_dispatch("joined-room")
                assert [d.agent_name for d in dispatches] == ["turnlog-tutor"]
            finally:
                await server.aclose()
        finally:
            await room.disconnect()

    asyncio.run(join_and_check())
