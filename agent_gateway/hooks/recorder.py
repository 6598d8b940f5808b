"""The session recorder: one per AgentSession, it turns every hook into one catalog event.

It owns the session's identity (a new UUIDv7 per AgentSession), the contiguous `sequence`
(1, 2, 3...), the turn ids (`hooks.turns`), and the envelope's `source`
(`/agents/{agent_name}/{worker_id}`) and `subject` (the room name). Hooks run on the
voice path inside LiveKit's synchronous `emit`: they map, wrap and hand the event to the
sink, with no I/O and no await. A hook never raises into LiveKit (its emitter re-raises a
`TypeError`): a failure is logged and counted, and takes no sequence number, so the log
keeps no gaps.

`session.started` is the first event and `session.closed` the last, exactly once: from the
session's `close`, or from `close()` when the job shuts down without one. After it the
recorder detaches and ignores whatever still arrives.
"""

from __future__ import annotations

import logging
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import uuid_utils
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.events import EventTypes

from turnlog.agent_gateway.hooks import room as room_map
from turnlog.agent_gateway.hooks.convert import utc
from turnlog.agent_gateway.hooks.session_hooks import SessionHooks
from turnlog.agent_gateway.hooks.sink import EventSink
from turnlog.agent_gateway.metrics import GatewayMetrics
from turnlog.schemas import (
    EventPayload,
    SessionClosed,
    SessionStarted,
    agent_source,
    trusted_event,
)
from turnlog.schemas.events.session import CloseReason, ErrorDetail

logger = logging.getLogger(__name__)

NOT_RECORDED_HOOKS: Final = frozenset({"debug_message"})
"""AgentSession events deliberately not recorded: LiveKit-internal trace payloads."""

_DEPRECATION_NOTICE: Final = "metrics_collected is deprecated"


@dataclass(frozen=True, kw_only=True)
class RecorderIdentity:
    """Where the recorder's events come from."""

    agent_name: str
    """Name the worker registered; empty for automatic dispatch."""
    worker_id: str
    """LiveKit worker id."""
    room_name: str
    """The room, the envelope `subject`."""


class SessionRecorder:
    """Records one AgentSession (and its room) as events on `sink`."""

    def __init__(
        self,
        *,
        sink: EventSink,
        identity: RecorderIdentity,
        session_id: str | None = None,
        metrics: GatewayMetrics | None = None,
        secrets: Iterable[str] = (),
        on_closed: Callable[[SessionRecorder, SessionClosed], None] | None = None,
    ) -> None:
        self.session_id = session_id or str(uuid_utils.uuid7())
        self.identity = identity
        self._sink = sink
        self._metrics = metrics
        self._on_closed = on_closed
        self._source = agent_source(identity.agent_name, identity.worker_id)
        self._subject = identity.room_name or "-"
        self._sequence = 0
        self._started = False
        self._closed = False
        self._subscriptions: list[tuple[rtc.EventEmitter[Any], str, Callable[..., None]]] = []
        self._room: rtc.Room | None = None
        self._snapshot_pending = False
        self._present: set[str] = set()
        """Sids of the participants and tracks recorded as joined / published and not since
        recorded as left: a room snapshot taken late records each of them once."""
        self.hooks = SessionHooks(self, secrets=tuple(secrets))

    @property
    def sequence(self) -> int:
        """Sequence of the last recorded event; 0 before the first."""
        return self._sequence

    @property
    def closed(self) -> bool:
        """Whether `session.closed` was recorded."""
        return self._closed

    def start(
        self, session: AgentSession[Any], *, started: SessionStarted, room: rtc.Room | None = None
    ) -> None:
        """Record `session.started`, subscribe to every hook of `session` (and of `room`),
        and record the participants and tracks already in the room (at once, or with the
        first event after the room connects: LiveKit announces no one who was there before).
        Call it before `session.start()`, so the first agent's handoff is recorded too."""
        if self._started:
            raise RuntimeError(f"session {self.session_id} is already being recorded")
        self._started = True
        self.record(started)
        self._subscribe_session(session)
        if room is not None:
            self._room = room
            self._subscribe_room(room)
            if room.isconnected():
                self._record_room_snapshot(room)
            else:
                self._snapshot_pending = True

    def close(self, reason: CloseReason = "job_shutdown", error: ErrorDetail | None = None) -> bool:
        """Record `session.closed` if the session's own `close` never came (the job is
        shutting down); False when it is already recorded, nothing was started, or the
        sink refused it (logged: a shutdown must go on)."""
        if self._closed or not self._started:
            return False
        try:
            self.finish(SessionClosed(reason=reason, error=error), at=None)
        except Exception:
            logger.exception(
                "session.closed could not be recorded", extra={"session_id": self.session_id}
            )
        return self._closed

    def finish(self, closed: SessionClosed, *, at: float | None) -> None:
        """Record `closed` as the last event, detach from every emitter, and tell the
        `on_closed` callback."""
        self.record(closed, at=at)
        self._closed = True
        self.detach()
        if self._on_closed is not None:
            self._on_closed(self, closed)

    def detach(self) -> None:
        """Unsubscribe every hook; safe to call twice."""
        for emitter, event, handler in self._subscriptions:
            emitter.off(event, handler)
        self._subscriptions.clear()

    def record(self, payload: EventPayload, *, at: float | None = None) -> None:
        """Wrap `payload` with the next sequence and hand it to the sink; `at` is the unix
        time of the fact (now when None). Nothing is recorded after `session.closed`."""
        if self._closed:
            logger.debug(
                "event after session.closed ignored",
                extra={"session_id": self.session_id, "event_type": payload.TYPE},
            )
            return
        if self._snapshot_pending and self._room is not None and self._room.isconnected():
            self._snapshot_pending = False
            self._record_room_snapshot(self._room)
        sequence = self._sequence + 1
        event = trusted_event(  # our own ids, sequence and clock: valid by construction
            payload,
            session_id=self.session_id,
            sequence=sequence,
            source=self._source,
            subject=self._subject,
            time=utc(at) if at is not None else None,
        )
        self._sink.publish(event)
        self._sequence = sequence
        if self._metrics is not None:
            self._metrics.observe(event)

    # -- subscriptions

    def _subscribe_session(self, session: AgentSession[Any]) -> None:
        self.hooks.bind(session)
        for hook in typing.get_args(EventTypes):
            if hook in NOT_RECORDED_HOOKS:
                continue
            handler = self._guarded(hook, self.hooks.handler(hook))
            if hook == "metrics_collected":
                with _quiet_deprecation_notice():
                    session.on(hook, handler)
            else:
                session.on(hook, handler)
            self._subscriptions.append((session, hook, handler))

    def _subscribe_room(self, room: rtc.Room) -> None:
        handlers: dict[str, Callable[..., None]] = {
            "participant_connected": self._on_participant_connected,
            "participant_disconnected": self._on_participant_disconnected,
            "track_published": self._on_track_published,
            "track_unpublished": self._on_track_unpublished,
            "local_track_published": self._on_local_track_published,
            "local_track_unpublished": self._on_local_track_unpublished,
        }
        for event, method in handlers.items():
            handler = self._guarded(event, method)
            room.on(event, handler)  # type: ignore[arg-type]  # rtc types its event names
            self._subscriptions.append((room, event, handler))

    def _guarded(self, hook: str, method: Callable[..., None]) -> Callable[..., None]:
        timer = self._metrics.hook_seconds.labels(hook) if self._metrics else None
        failures = self._metrics.hook_failures.labels(hook) if self._metrics else None

        def handler(*args: Any) -> None:
            started = time.perf_counter()
            try:
                method(*args)
            except Exception:
                logger.exception(
                    "hook %s could not be recorded", hook, extra={"session_id": self.session_id}
                )
                if failures is not None:
                    failures.inc()
            if timer is not None:
                timer.observe(time.perf_counter() - started)

        handler.__name__ = f"turnlog_{hook}"
        return handler

    # -- room: participants and tracks (session-scoped, no turn)

    def _record_room_snapshot(self, room: rtc.Room) -> None:
        for participant in list(room.remote_participants.values()):
            self._on_participant_connected(participant)
            for publication in list(participant.track_publications.values()):
                self._on_track_published(publication, participant)
        if room.isconnected():
            for local_publication in list(room.local_participant.track_publications.values()):
                self._local_published(local_publication)

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.sid not in self._present:
            self._present.add(participant.sid)
            self.record(room_map.map_participant_connected(participant))

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self._present.discard(participant.sid)
        self.record(room_map.map_participant_disconnected(participant))

    def _on_track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if publication.sid not in self._present:
            self._present.add(publication.sid)
            self.record(room_map.map_track_published(publication, participant, local=False))

    def _on_track_unpublished(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        self._present.discard(publication.sid)
        self.record(room_map.map_track_unpublished(publication, participant, local=False))

    def _on_local_track_published(
        self, publication: rtc.LocalTrackPublication, _track: rtc.Track
    ) -> None:
        self._local_published(publication)

    def _local_published(self, publication: rtc.LocalTrackPublication) -> None:
        if publication.sid not in self._present:
            self._present.add(publication.sid)
            participant = self._local_participant()
            self.record(room_map.map_track_published(publication, participant, local=True))

    def _on_local_track_unpublished(self, publication: rtc.LocalTrackPublication) -> None:
        self._present.discard(publication.sid)
        participant = self._local_participant()
        self.record(room_map.map_track_unpublished(publication, participant, local=True))

    def _local_participant(self) -> rtc.LocalParticipant:
        if self._room is None:
            raise RuntimeError("no room attached")
        return self._room.local_participant


class _DeprecationNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_DEPRECATION_NOTICE)


@contextmanager
def _quiet_deprecation_notice() -> Iterator[None]:
    """Drop the one warning LiveKit logs when `metrics_collected` gets a subscriber, for
    the duration of that subscription only.

    The notice tells application code to use `session_usage_updated` and
    `ChatMessage.metrics`; the gateway records both, and also records `metrics_collected`
    while LiveKit still emits it, because it is the only source of per-request STT, VAD,
    turn-detector and interruption metrics (the catalog's `metrics.collected`). The filter
    matches that message alone and is removed right after, so any other warning, including
    a later deprecation notice, still shows."""
    livekit_logger = logging.getLogger("livekit.agents")
    notice_filter = _DeprecationNoticeFilter()
    livekit_logger.addFilter(notice_filter)
    try:
        yield
    finally:
        livekit_logger.removeFilter(notice_filter)
