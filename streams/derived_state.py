"""The derived-topics fold: a session's events, delivered in any order and any number of
times, folded in `sequence` order into `TurnCompleted` and `SessionSummarized` records.
Pure: no I/O, no clock (the caller passes `now`); `derived_projector` stores what it
holds in a changelog topic.

Semantics (the one thing to know: only the contiguous prefix counts):
- A session's events are folded in `sequence` order only. An event past the next missing
  sequence waits in the session's buffer until every earlier sequence is in; an event
  whose (session id, sequence) is folded or buffered already is a duplicate and ignored.
- `flush` ends a batch: each turn (session id, turn id) that has an assistant message and
  took a new fact since its last record is emitted. Turn facts: its conversation items
  (user and assistant), its tool batches (`tools.executed`), its final transcripts that
  carry a language. `revision` = the sequence of the turn's latest fact; the first record
  comes when the prefix passes the turn's first assistant message, a later fact gives a
  correction with the same turn id and a higher revision. Key `<session id>/<turn id>`.
- A session's summary is emitted only once the prefix reaches its `session.closed`;
  `revision` = the sequence of the latest event folded (the close, or a later fact such
  as late usage, which gives a correction). Key = session id.
- Event ids are `derived_event_id` of (session, turn or "session", revision), so a
  fully delivered session ends with the same last record per key, same id and payload,
  whatever the delivery order, duplicates and batch cuts; a re-emission after a crash
  repeats an id.
- Bounded memory: `expire(now)` drops a session `linger` seconds (default 10 minutes)
  after its summary, leaving a tombstone (its last folded sequence) that keeps late
  duplicates from re-opening it for `tombstone_ttl` (default 7 days); a later event past
  that sequence is counted in `late` and ignored. A session that never closes is dropped
  (tombstone too) after `idle_ttl` (default a day) without an event. A session buffering
  more than `max_buffered` events (default 10,000), or waiting `gap_wait` (default an
  hour) for a missing sequence, stops waiting: the missing sequences are skipped
  (counted in `skipped`, logged), and any of them arriving later is ignored. Skipping is
  the one case where the output depends on timing; it needs a lost event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from turnlog.schemas import (
    AgentHandedOff,
    CloudEvent,
    ConversationItemAdded,
    ErrorOccurred,
    ParticipantJoined,
    ParticipantLeft,
    SessionClosed,
    SessionStarted,
    ToolsExecuted,
    UserTranscribed,
)
from turnlog.streams.derived_model import (
    DERIVED,
    LATENCIES,
    SESSIONS_SOURCE,
    TURNS_SOURCE,
    Output,
    Session,
    Tombstone,
    Turn,
    summary_output,
    turn_output,
)

__all__ = [
    "LATENCIES", "SESSIONS_SOURCE", "TURNS_SOURCE", "Counts", "DerivedState", "Output",
    "Session", "Tombstone", "Turn",
]  # fmt: skip

logger = logging.getLogger("turnlog.streams.derived")


@dataclass(slots=True)
class Counts:
    """What `add` did, since the caller last reset it."""

    new: int = 0
    duplicates: int = 0
    late: int = 0
    """Events of a dropped session past its last folded sequence (ignored)."""
    skipped: int = 0


class DerivedState:
    """The fold of every session of one partition (or of any set of sessions)."""

    def __init__(
        self, *, max_buffered: int = 10_000, linger: float = 600.0,
        tombstone_ttl: float = 7 * 24 * 3600.0, gap_wait: float = 3600.0,
        idle_ttl: float = 24 * 3600.0,
    ) -> None:  # fmt: skip
        if max_buffered < 1 or min(linger, tombstone_ttl, gap_wait, idle_ttl) < 0:
            raise ValueError("max_buffered must be >= 1, the durations >= 0")
        self.max_buffered = max_buffered
        self.linger = linger
        self.tombstone_ttl = tombstone_ttl
        self.gap_wait = gap_wait
        self.idle_ttl = idle_ttl
        self.sessions: dict[str, Session] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self.counts = Counts()
        self._touched: set[str] = set()
        self._changed: set[str] = set()
        self._changed_turns: set[tuple[str, str]] = set()
        self._dirty_turns: set[tuple[str, str]] = set()
        """Turns that took a fact since the last flush."""
        self._buffer_changes: dict[tuple[str, int], CloudEvent[Any] | None] = {}

    # --- folding -----------------------------------------------------------------------

    def add(self, event: CloudEvent[Any], *, now: float = 0.0) -> bool:
        """Take one event; False when it is a duplicate, late or a derived record."""
        if isinstance(event.data, DERIVED):
            return False
        session_id, sequence = event.sessionid, event.sequence
        tomb = self.tombstones.get(session_id)
        if tomb is not None:
            if sequence > tomb.folded:
                self.counts.late += 1
                logger.warning("event after the session was dropped, ignored",
                               extra={"session_id": session_id, "sequence": sequence})  # fmt: skip
            else:
                self.counts.duplicates += 1
            return False
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = Session(session_id)
        if sequence < session.next_sequence or sequence in session.buffer:
            self.counts.duplicates += 1
            return False
        self.counts.new += 1
        session.arrived_at = now
        self._touched.add(session_id)
        self._changed.add(session_id)
        if sequence != session.next_sequence:
            session.buffer[sequence] = event
            self._buffer_changes[session_id, sequence] = event
            if len(session.buffer) > self.max_buffered:
                self._skip_gap(session)
            return True
        self._fold(session, event)
        self._drain(session)
        return True

    def _drain(self, session: Session) -> None:
        while session.next_sequence in session.buffer:
            sequence = session.next_sequence
            self._buffer_changes[session.session_id, sequence] = None
            self._fold(session, session.buffer.pop(sequence))

    def _skip_gap(self, session: Session) -> None:
        first = min(session.buffer)
        missing = first - session.next_sequence
        logger.warning("too many events waiting for a missing sequence: skipped",
                       extra={"session_id": session.session_id,
                              "missing": f"{session.next_sequence}..{first - 1}"})  # fmt: skip
        session.skipped += missing
        self.counts.skipped += missing
        session.next_sequence = first
        self._touched.add(session.session_id)
        self._changed.add(session.session_id)
        self._drain(session)

    def _fold(self, session: Session, event: CloudEvent[Any]) -> None:
        session.next_sequence = event.sequence + 1
        session.last_time = event.time
        if session.room is None or event.subject < session.room:
            session.room = event.subject
        if session.started_at is None or event.time < session.started_at:
            session.started_at = event.time
        data = event.data
        if isinstance(data, ConversationItemAdded):
            self._item(session, event, data)
        elif isinstance(data, ToolsExecuted):
            session.tool_calls += len(data.calls)
            if data.turn_id is not None and data.calls:
                turn = self._turn(session, data.turn_id, event)
                turn.calls.extend(c.call_id for c in data.calls if c.call_id not in turn.calls)
        elif isinstance(data, UserTranscribed):
            if data.turn_id is not None and data.is_final and data.language is not None:
                self._turn(session, data.turn_id, event).language = data.language
        elif isinstance(data, SessionStarted):
            _started(session, data)
        elif isinstance(data, SessionClosed):
            session.closed = {
                "sequence": event.sequence, "time": event.time, "reason": data.reason,
                "status": "failed" if data.reason == "error" else "closed",
            }  # fmt: skip
        elif isinstance(data, ParticipantJoined | ParticipantLeft):
            _append_new(session.participants, (data.identity,))
        elif isinstance(data, AgentHandedOff):
            old = () if data.old_agent_id is None else (data.old_agent_id,)
            _append_new(session.agent_ids, (*old, data.new_agent_id))
        elif isinstance(data, ErrorOccurred):
            session.errors += 1

    def _turn(self, session: Session, turn_id: str, event: CloudEvent[Any]) -> Turn:
        turn = session.turns.get(turn_id)
        if turn is None:
            turn = session.turns[turn_id] = Turn(turn_id)
        turn.revision, turn.revised_at = event.sequence, event.time
        self._changed_turns.add((session.session_id, turn_id))
        self._dirty_turns.add((session.session_id, turn_id))
        return turn

    def _item(self, session: Session, event: CloudEvent[Any], data: ConversationItemAdded) -> None:
        if data.role == "assistant" and data.interrupted:
            session.interruptions += 1
        if data.turn_id is None or data.role not in ("user", "assistant"):
            return
        turn = self._turn(session, data.turn_id, event)
        metrics = data.metrics
        if data.role == "user":
            if turn.user is None:
                turn.user = {
                    "text": data.text, "item_id": data.item_id,
                    "confidence": data.transcript_confidence,
                    "started_speaking_at": metrics.started_speaking_at,
                    "stopped_speaking_at": metrics.stopped_speaking_at,
                }  # fmt: skip
                turn.user_latencies = _latencies(metrics, {})
            return
        if turn.answer is None:
            turn.answer = {
                "item_id": data.item_id, "agent_id": data.agent_id,
                "started_speaking_at": metrics.started_speaking_at,
            }  # fmt: skip
        turn.texts.append(data.text)
        turn.interrupted = turn.interrupted or data.interrupted
        turn.answer_latencies = _latencies(metrics, turn.answer_latencies)

    # --- emitting ----------------------------------------------------------------------

    def flush(self, *, now: float = 0.0) -> list[Output]:
        """End a batch: the records of every turn and summary that changed since the last
        flush, turns in turn-id order, then the summary, per session in id order."""
        outputs: list[Output] = []
        dirty: dict[str, list[str]] = {}
        for session_id, turn_id in sorted(self._dirty_turns):
            dirty.setdefault(session_id, []).append(turn_id)
        self._dirty_turns.clear()
        for session_id in sorted(self._touched):
            session = self.sessions.get(session_id)
            if session is None:
                continue
            for turn_id in dirty.get(session_id, ()):
                turn = session.turns[turn_id]
                if turn.answer is not None and turn.revision > turn.emitted:
                    outputs.append(turn_output(session, turn))
                    turn.emitted = turn.revision
                    self._changed_turns.add((session_id, turn_id))
            if session.closed is not None and session.folded > session.summarized:
                outputs.append(summary_output(session))
                session.summarized = session.folded
                if session.summarized_at is None:
                    session.summarized_at = now
                self._changed.add(session_id)
        self._touched.clear()
        return outputs

    def expire(self, now: float) -> None:
        """Drop sessions summarized more than `linger` ago and sessions that heard nothing
        for `idle_ttl` (never closed: a tombstone stays if they folded anything), forget
        tombstones older than `tombstone_ttl`, and stop waiting for a sequence missing for
        `gap_wait` (the gap is skipped; the next `flush` emits what follows it)."""
        for session in list(self.sessions.values()):
            idle = now - session.arrived_at
            if session.summarized_at is not None and now - session.summarized_at >= self.linger:
                self._drop(session, tombstone=True, now=now)
            elif idle >= self.idle_ttl:
                logger.info("session idle, never closed: dropped",
                            extra={"session_id": session.session_id})  # fmt: skip
                self._drop(session, tombstone=session.folded > 0, now=now)
            elif session.buffer and idle >= self.gap_wait:
                self._skip_gap(session)
        for tomb in list(self.tombstones.values()):
            if now - tomb.dropped_at >= self.tombstone_ttl:
                del self.tombstones[tomb.session_id]
                self._changed.add(tomb.session_id)

    def _drop(self, session: Session, *, tombstone: bool, now: float) -> None:
        sid = session.session_id
        del self.sessions[sid]
        self._touched.discard(sid)
        self._changed.add(sid)
        self._changed_turns.update((sid, t) for t in session.turns)
        self._buffer_changes.update({(sid, s): None for s in session.buffer})
        if tombstone:
            self.tombstones[sid] = Tombstone(sid, session.folded, now)

    # --- what changed, for the changelog ----------------------------------------------

    def take_changes(
        self,
    ) -> tuple[set[str], set[tuple[str, str]], dict[tuple[str, int], CloudEvent[Any] | None]]:
        """Sessions, turns and buffered events changed since the last call (then forgotten):
        read their current values with `self.sessions` / `self.tombstones`; a missing one
        was deleted."""
        changes = (self._changed, self._changed_turns, self._buffer_changes)
        self._changed, self._changed_turns, self._buffer_changes = set(), set(), {}
        return changes

    def restore(
        self, sessions: Iterable[Session], tombstones: Iterable[Tombstone] = (),
    ) -> None:  # fmt: skip
        """Put back sessions and tombstones read from a changelog."""
        for session in sessions:
            self.sessions[session.session_id] = session
        for tomb in tombstones:
            self.tombstones[tomb.session_id] = tomb


def _started(session: Session, data: SessionStarted) -> None:
    session.started = {
        "agent_name": data.agent_name, "job_id": data.job_id, "worker_id": data.worker_id,
        "room_sid": data.room_sid,
        **{name: None if info is None else (info.provider, info.model)
           for name, info in (("stt", data.stt), ("llm", data.llm), ("tts", data.tts))},
    }  # fmt: skip
    if data.agent_id is not None:
        _append_new(session.agent_ids, (data.agent_id,))
    if data.participant_identity is not None:
        _append_new(session.participants, (data.participant_identity,))


def _append_new(values: list[str], new: Iterable[str]) -> None:
    for value in new:
        if value not in values:
            values.append(value)


def _latencies(metrics: Any, known: dict[str, float]) -> dict[str, float]:
    found = dict(known)
    for name in LATENCIES:
        if name not in found:
            value = getattr(metrics, name)
            if value is not None:
                found[name] = float(value)
    return found
