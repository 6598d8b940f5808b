"""Session, error and room mappings, fed real livekit-agents and livekit-rtc objects."""

from __future__ import annotations

from typing import Any

import pytest
from livekit import rtc
from livekit.agents import llm, stt, tts
from livekit.agents._exceptions import APIConnectionError, APIStatusError
from livekit.agents.inference.interruption import InterruptionDetectionError
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.agents.voice.events import CloseEvent, CloseReason, ErrorEvent
from livekit.rtc._proto import handle_pb2, participant_pb2, track_pb2

from turnlog.agent_gateway.hooks import room, session
from turnlog.agent_gateway.hooks.convert import model_info, utc
from turnlog.schemas import ModelInfo

pytestmark = pytest.mark.unit


class NamedLLM(llm.LLM):
    """An LLM that only has a provider and a model name."""

    @property
    def model(self) -> str:
        return "gpt-4.1-mini"

    @property
    def provider(self) -> str:
        return "openai"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        raise NotImplementedError


def owned_handle() -> handle_pb2.FfiOwnedHandle:
    return handle_pb2.FfiOwnedHandle(id=0)  # 0: no native handle to release


def remote_participant(**info: Any) -> rtc.RemoteParticipant:
    return rtc.RemoteParticipant(
        participant_pb2.OwnedParticipant(
            handle=owned_handle(), info=participant_pb2.ParticipantInfo(**info)
        )
    )


def remote_publication(**info: Any) -> rtc.RemoteTrackPublication:
    return rtc.RemoteTrackPublication(
        track_pb2.OwnedTrackPublication(
            handle=owned_handle(), info=track_pb2.TrackPublicationInfo(**info)
        )
    )


# -- session.started


def test_session_started_from_the_job() -> None:
    job = session.JobInfo(
        job_id="AJ_1",
        agent_name="turnlog-tutor",
        worker_id="AW_1",
        room_name="lesson-1",
        room_sid="RM_1",
        accepted_at=1_767_225_600.0,
        participant_identity="student",
    )

    started = session.map_session_started(
        job, agent_id="tutor", llm=model_info(NamedLLM()), stt=ModelInfo(provider="pocketsphinx")
    )

    assert (started.job_id, started.agent_name, started.worker_id) == (
        "AJ_1",
        "turnlog-tutor",
        "AW_1",
    )
    assert started.room_sid == "RM_1"
    assert started.agent_id == "tutor"
    assert started.participant_identity == "student"
    assert started.accepted_at == utc(1_767_225_600.0)
    assert started.llm == ModelInfo(provider="openai", model="gpt-4.1-mini")
    assert started.stt == ModelInfo(provider="pocketsphinx")
    assert started.tts is None


def test_session_started_without_accept_time_or_sid() -> None:
    job = session.JobInfo(
        job_id="j", agent_name="", worker_id="w", room_name="r", room_sid="", accepted_at=0.0
    )

    started = session.map_session_started(job, agent_id=None)

    assert started.accepted_at is None
    assert started.room_sid is None


# -- error and close


@pytest.mark.asyncio
async def test_llm_error_is_scrubbed_and_typed() -> None:
    cause = APIStatusError(
        "Incorrect API key provided: sk-live-0123456789abcdef", status_code=401
    )
    error = llm.LLMError(
        timestamp=1.0, label="livekit.plugins.openai.llm.LLM", error=cause, recoverable=False
    )
    ev = ErrorEvent(error=error, source=NamedLLM())

    mapped = session.map_error(ev, turn_id="turn-3", secrets=["never-here"])

    detail = mapped.error
    assert detail.source == "llm"
    assert "sk-live-0123456789abcdef" not in detail.message
    assert detail.message.startswith("Incorrect API key provided: ")
    assert detail.error_type == "APIStatusError"
    assert detail.status_code == 401
    assert detail.recoverable is False
    assert detail.label == "livekit.plugins.openai.llm.LLM"
    assert (detail.provider, detail.model) == ("openai", "gpt-4.1-mini")
    assert mapped.turn_id == "turn-3"


@pytest.mark.parametrize(
    ("error", "source"),
    [
        (stt.STTError(timestamp=1.0, label="stt", error=APIConnectionError(), recoverable=True),
         "stt"),
        (tts.TTSError(timestamp=1.0, label="tts", error=APIConnectionError(), recoverable=True),
         "tts"),
        (llm.RealtimeModelError(timestamp=1.0, label="rt", error=ValueError("x"),
                                recoverable=False), "realtime_model"),
        (InterruptionDetectionError(label="aid", error=ValueError("x"), recoverable=True),
         "interruption_detection"),
        (RuntimeError("plugin exploded"), "other"),
    ],
)
def test_error_sources(error: object, source: str) -> None:
    mapped = session.map_error(ErrorEvent(error=error, source=object()), turn_id=None)

    assert mapped.error.source == source
    assert mapped.error.provider is None
    assert mapped.error.status_code is None


def test_a_plugin_error_without_livekit_wrapper() -> None:
    mapped = session.map_error(ErrorEvent(error=RuntimeError("boom"), source="x"), turn_id=None)

    assert (mapped.error.message, mapped.error.error_type) == ("boom", "RuntimeError")
    assert mapped.error.recoverable is False


def test_close_with_and_without_error() -> None:
    error = stt.STTError(
        timestamp=1.0, label="stt", error=APIConnectionError("key=abc123 refused"),
        recoverable=False,
    )

    plain = session.map_close(CloseEvent(reason=CloseReason.PARTICIPANT_DISCONNECTED))
    failed = session.map_close(CloseEvent(reason=CloseReason.ERROR, error=error))

    assert (plain.reason, plain.error) == ("participant_disconnected", None)
    assert failed.reason == "error"
    assert failed.error is not None
    assert failed.error.source == "stt"
    assert "abc123" not in failed.error.message


def test_every_livekit_close_reason_maps() -> None:
    for reason in CloseReason:
        assert session.map_close(CloseEvent(reason=reason)).reason == reason.value


# -- room


def test_participant_joined_and_left() -> None:
    participant = remote_participant(
        sid="PA_1",
        identity="student",
        name="Ada",
        kind=participant_pb2.PARTICIPANT_KIND_SIP,
        disconnect_reason=participant_pb2.CLIENT_INITIATED,
    )

    joined = room.map_participant_connected(participant)
    left = room.map_participant_disconnected(participant)

    assert (joined.identity, joined.sid, joined.name, joined.kind) == (
        "student",
        "PA_1",
        "Ada",
        "sip",
    )
    assert (left.identity, left.sid, left.disconnect_reason) == (
        "student",
        "PA_1",
        "client_initiated",
    )


def test_participant_without_name_or_reason() -> None:
    participant = remote_participant(sid="PA_2", identity="x")

    assert room.map_participant_connected(participant).name is None
    assert room.map_participant_connected(participant).kind == "standard"
    assert room.map_participant_disconnected(participant).disconnect_reason is None


def test_tracks_published_and_unpublished() -> None:
    participant = remote_participant(sid="PA_1", identity="student")
    microphone = remote_publication(
        sid="TR_1",
        name="mic",
        kind=track_pb2.KIND_AUDIO,
        source=track_pb2.SOURCE_MICROPHONE,
        mime_type="audio/opus",
        muted=True,
    )
    screen = remote_publication(
        sid="TR_2", kind=track_pb2.KIND_AUDIO, source=track_pb2.SOURCE_SCREENSHARE_AUDIO
    )

    published = room.map_track_published(microphone, participant, local=False)
    shared = room.map_track_published(screen, participant, local=True)
    unpublished = room.map_track_unpublished(microphone, participant, local=False)

    assert (published.participant_identity, published.participant_sid) == ("student", "PA_1")
    assert (published.track_sid, published.kind, published.source) == (
        "TR_1",
        "audio",
        "microphone",
    )
    assert (published.name, published.mime_type, published.muted, published.local) == (
        "mic",
        "audio/opus",
        True,
        False,
    )
    assert (shared.source, shared.name, shared.mime_type, shared.local) == (
        "screen_share_audio",
        None,
        None,
        True,
    )
    assert (unpublished.track_sid, unpublished.kind, unpublished.source) == (
        "TR_1",
        "audio",
        "microphone",
    )
