"""The stack's LiveKit server: loopback only, dev keys, and a real client joins a room."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest
from livekit import api, rtc

from turnlog.infra.stack.stack import Stack

pytestmark = pytest.mark.integration


def listeners_of(pid: int) -> list[str]:
    """Local addresses (host:port) the process listens on, TCP and UDP."""
    out = subprocess.run(["ss", "-H", "-lntupn"], capture_output=True, text=True, check=True)
    return [line.split()[4] for line in out.stdout.splitlines() if f"pid={pid}," in line]


def test_every_listener_is_on_loopback(stack: Stack) -> None:
    status = stack.livekit.status()
    assert status.running
    assert status.pid is not None

    addresses = listeners_of(status.pid)

    s = stack.settings
    assert f"{s.host}:{s.livekit_port}" in addresses
    assert f"{s.host}:{s.livekit_udp_port}" in addresses
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses


# the dev server's well-known secret is 6 bytes; PyJWT warns about any HMAC key under 32
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_client_joins_a_room_with_a_dev_key_token(stack: Stack) -> None:
    s = stack.settings
    room_name = f"test-{uuid.uuid4().hex[:8]}"
    token = (
        api.AccessToken(s.livekit_api_key, s.livekit_api_secret)
        .with_identity("probe")
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .to_jwt()
    )

    async def join_and_list() -> tuple[str, list[str]]:
        room = rtc.Room()
        await room.connect(s.livekit_url, token)
        try:
            source = rtc.AudioSource(48000, 1)
            track = rtc.LocalAudioTrack.create_audio_track("probe", source)
            published = await room.local_participant.publish_track(track)
            await source.capture_frame(rtc.AudioFrame(bytes(960), 48000, 1, 480))
            tracks: list[str] = []
            async with api.LiveKitAPI(
                s.livekit_url.replace("ws://", "http://"), s.livekit_api_key, s.livekit_api_secret
            ) as lk, asyncio.timeout(10):
                while published.sid not in tracks:  # the server learns of it a moment later
                    listed = await lk.room.list_participants(
                        api.ListParticipantsRequest(room=room_name)
                    )
                    tracks = [t.sid for p in listed.participants for t in p.tracks]
                    await asyncio.sleep(0.1)
            return published.sid, tracks
        finally:
            await room.disconnect()

    published, tracks = asyncio.run(join_and_list())
    assert published in tracks
