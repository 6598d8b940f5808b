"""The room: participants and their tracks. Pure functions from LiveKit `rtc` objects to
catalog payloads; enum values become their lower-case names (`PARTICIPANT_KIND_SIP` ->
`sip`, `KIND_AUDIO` -> `audio`, `SOURCE_MICROPHONE` -> `microphone`)."""

from __future__ import annotations

from livekit import rtc

from turnlog.agent_gateway.hooks.convert import enum_name
from turnlog.schemas import ParticipantJoined, ParticipantLeft, TrackPublished, TrackUnpublished


def map_participant_connected(participant: rtc.Participant) -> ParticipantJoined:
    """Room `participant_connected` (or a participant already in the room when the session
    started) -> `participant.joined`."""
    return ParticipantJoined(
        identity=participant.identity,
        sid=participant.sid,
        name=participant.name or None,
        kind=participant_kind(participant.kind),
    )


def map_participant_disconnected(participant: rtc.Participant) -> ParticipantLeft:
    """Room `participant_disconnected` -> `participant.left`."""
    reason = participant.disconnect_reason
    return ParticipantLeft(
        identity=participant.identity,
        sid=participant.sid,
        disconnect_reason=(
            rtc.DisconnectReason.Name(reason).lower() if reason is not None else None
        ),
    )


def map_track_published(
    publication: rtc.TrackPublication, participant: rtc.Participant, *, local: bool
) -> TrackPublished:
    """Room `track_published` (remote) or `local_track_published` (the agent's own,
    `local=True`) -> `track.published`."""
    return TrackPublished(
        participant_identity=participant.identity,
        participant_sid=participant.sid,
        track_sid=publication.sid,
        kind=track_kind(publication.kind),
        source=track_source(publication.source),
        name=publication.name or None,
        mime_type=publication.mime_type or None,
        muted=publication.muted,
        local=local,
    )


def map_track_unpublished(
    publication: rtc.TrackPublication, participant: rtc.Participant, *, local: bool
) -> TrackUnpublished:
    """Room `track_unpublished` or `local_track_unpublished` -> `track.unpublished`."""
    return TrackUnpublished(
        participant_identity=participant.identity,
        participant_sid=participant.sid,
        track_sid=publication.sid,
        kind=track_kind(publication.kind),
        source=track_source(publication.source),
        local=local,
    )


def participant_kind(kind: rtc.ParticipantKind.ValueType) -> str:
    """`PARTICIPANT_KIND_STANDARD` -> `standard`."""
    return enum_name(rtc.ParticipantKind.Name(kind), "PARTICIPANT_KIND_")


def track_kind(kind: rtc.TrackKind.ValueType) -> str:
    """`KIND_AUDIO` -> `audio`."""
    return enum_name(rtc.TrackKind.Name(kind), "KIND_")


def track_source(source: rtc.TrackSource.ValueType) -> str:
    """`SOURCE_MICROPHONE` -> `microphone`; `SOURCE_SCREENSHARE_AUDIO` ->
    `screen_share_audio`, LiveKit's client-side spelling that the catalog documents."""
    name = enum_name(rtc.TrackSource.Name(source), "SOURCE_")
    return name.replace("screenshare", "screen_share")
