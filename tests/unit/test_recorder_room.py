"""The recorder on the room: participants and tracks, the ones already there included."""

from __future__ import annotations

from typing import Any

import pytest
from livekit import rtc
from livekit.agents import AgentSession
from livekit.rtc._proto import handle_pb2, participant_pb2, track_pb2

from turnlog.agent_gateway.hooks import MemorySink, RecorderIdentity, SessionRecorder
from turnlog.schemas import SessionStarted

pytestmark = pytest.mark.unit

IDENTITY = RecorderIdentity(agent_name="turnlog-tutor", worker_id="AW_1", room_name="lesson-1")
STARTED = SessionStarted(job_id="AJ_1", agent_name="turnlog-tutor", worker_id="AW_1")


def t(name: str) -> str:
    return f"turnlog.{name}.v1"


def new_recorder() -> tuple[SessionRecorder, MemorySink]:
    sink = MemorySink()
    return SessionRecorder(sink=sink, identity=IDENTITY), sink


def _handle() -> handle_pb2.FfiOwnedHandle:
    return handle_pb2.FfiOwnedHandle(id=0)


def _remote(identity: str, *publications: rtc.RemoteTrackPublication) -> rtc.RemoteParticipant:
    participant = rtc.RemoteParticipant(participant_pb2.OwnedParticipant(
        handle=_handle(), info=participant_pb2.ParticipantInfo(sid=f"PA_{identity}",
                                                               identity=identity)))
    for publication in publications:
        participant._track_publications[publication.sid] = publication
    return participant


def _publication(sid: str, cls: type[Any] = rtc.RemoteTrackPublication) -> Any:
    info = track_pb2.TrackPublicationInfo(
        sid=sid, kind=track_pb2.KIND_AUDIO, source=track_pb2.SOURCE_MICROPHONE
    )
    return cls(track_pb2.OwnedTrackPublication(handle=_handle(), info=info))


class JoinedRoom(rtc.Room):
    """A real `rtc.Room` as the agent sees it once joined, without a server."""

    def __init__(self, *remote: rtc.RemoteParticipant) -> None:
        super().__init__()
        self._info.name = "lesson-1"
        self._remote_participants = {p.identity: p for p in remote}
        self.agent = rtc.LocalParticipant(self._room_queue, participant_pb2.OwnedParticipant(
            handle=_handle(), info=participant_pb2.ParticipantInfo(sid="PA_agent",
                                                                   identity="agent-AJ_1")))

        self.connected = True

    @property
    def local_participant(self) -> rtc.LocalParticipant:
        return self.agent

    def isconnected(self) -> bool:
        return self.connected


@pytest.mark.asyncio
async def test_room_events_and_the_participants_already_there() -> None:
    early = _remote("early", _publication("TR_early"))
    room = JoinedRoom(early)
    recorder, sink = new_recorder()
    recorder.start(AgentSession(), started=STARTED, room=room)
    late = _remote("late")
    mic = _publication("TR_late")
    own = _publication("TR_agent", rtc.LocalTrackPublication)

    room.emit("participant_connected", late)
    room.emit("track_published", mic, late)
    room.emit("local_track_published", own, None)
    room.emit("track_unpublished", mic, late)
    room.emit("local_track_unpublished", own)
    room.emit("participant_disconnected", late)
    recorder.close()
    room.emit("participant_connected", _remote("after-close"))

    assert sink.types == [
        t("session.started"),
        t("participant.joined"),
        t("track.published"),
        t("participant.joined"),
        t("track.published"),
        t("track.published"),
        t("track.unpublished"),
        t("track.unpublished"),
        t("participant.left"),
        t("session.closed"),
    ]
    data = [e.data for e in sink.events]
    assert (data[1].identity, data[2].track_sid, data[3].identity) == ("early", "TR_early", "late")
    assert (data[5].participant_identity, data[5].local) == ("agent-AJ_1", True)
    assert (data[4].local, data[7].local) == (False, True)
    assert [e.sequence for e in sink.events] == list(range(1, 11))
    assert not room._events.get("participant_connected")




@pytest.mark.asyncio
async def test_a_room_joined_after_recording_began_is_snapshot_once() -> None:
    early = _remote("early", _publication("TR_early"))
    room = JoinedRoom(early)
    room.connected = False  # `record` before `ctx.connect()`: LiveKit announces no one
    recorder, sink = new_recorder()
    recorder.start(AgentSession(), started=STARTED, room=room)
    assert sink.types == [t("session.started")]

    room.connected = True
    late = _remote("late")
    room._remote_participants["late"] = late  # joined after the connect, announced
    room.emit("participant_connected", late)
    recorder.close()

    assert sink.types == [
        t("session.started"),
        t("participant.joined"),  # the snapshot, taken with the first event after the join
        t("track.published"),
        t("participant.joined"),  # the late one, once: the snapshot skipped it
        t("session.closed"),
    ]
    identities = [e.data.identity for e in sink.events if e.type == t("participant.joined")]
    assert identities == ["early", "late"]
    assert [e.sequence for e in sink.events] == list(range(1, 6))
