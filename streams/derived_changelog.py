"""The derived projector's changelog records: per-session state as small compacted
records, so a restart or a rebalance restores the fold exactly as it was committed.

Keys, in the events' partition number: `s/<session id>` the session's facts (or its
tombstone), `t/<session id>/<turn id>` one turn, `b/<session id>/<sequence>` one buffered
event (its encoded CloudEvent), `position` the next events offset of the partition. A
deleted value (None) removes the key. Values carry their own ids, so keys are never parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from turnlog.schemas import CloudEvent, decode, encode
from turnlog.streams.derived_model import Session, Tombstone, Turn
from turnlog.streams.derived_state import DerivedState

POSITION_KEY: Final = b"position"
_FORMAT: Final = 1

_TIMES_TURN: Final = ("started_speaking_at", "stopped_speaking_at")


def session_key(session_id: str) -> bytes:
    return f"s/{session_id}".encode()


def turn_key(session_id: str, turn_id: str) -> bytes:
    return f"t/{session_id}/{turn_id}".encode()


def buffer_key(session_id: str, sequence: int) -> bytes:
    return f"b/{session_id}/{sequence}".encode()


def changes(state: DerivedState) -> list[tuple[bytes, bytes | None]]:
    """The (key, value) records of what changed in `state` since the last call."""
    sessions, turns, buffered = state.take_changes()
    records: list[tuple[bytes, bytes | None]] = []
    for sid in sorted(sessions):
        session, tomb = state.sessions.get(sid), state.tombstones.get(sid)
        if session is not None:
            records.append((session_key(sid), _dump(_session(session))))
        elif tomb is not None:
            records.append((session_key(sid), _dump(_tombstone(tomb))))
        else:
            records.append((session_key(sid), None))
    for sid, turn_id in sorted(turns):
        owner = state.sessions.get(sid)
        turn = None if owner is None else owner.turns.get(turn_id)
        value = None if turn is None else _dump(_turn(sid, turn))
        records.append((turn_key(sid, turn_id), value))
    for (sid, sequence), event in sorted(buffered.items(), key=lambda kv: kv[0]):
        records.append((buffer_key(sid, sequence), None if event is None else encode(event)))
    return records


def position_value(offset: int) -> bytes:
    return _dump({"format": _FORMAT, "offset": offset})


def restore(state: DerivedState, values: Iterable[tuple[bytes, bytes]]) -> int | None:
    """Rebuild `state` from a partition's latest value per key (deleted keys left out);
    returns the stored position, if any."""
    position: int | None = None
    sessions: dict[str, Session] = {}
    tombstones: list[Tombstone] = []
    turns: list[tuple[str, Turn]] = []
    buffered: list[CloudEvent[Any]] = []
    for key, value in values:
        if key == POSITION_KEY:
            position = int(json.loads(value)["offset"])
        elif key.startswith(b"b/"):
            buffered.append(decode(value))
        else:
            data = json.loads(value)
            if key.startswith(b"t/"):
                turns.append((data.pop("session_id"), _load_turn(data)))
            elif data.get("tombstone"):
                tombstones.append(Tombstone(data["session_id"], data["folded"], data["dropped_at"]))
            else:
                sessions[data["session_id"]] = _load_session(data)
    for sid, turn in turns:
        if sid in sessions:
            sessions[sid].turns[turn.turn_id] = turn
    for event in buffered:
        if event.sessionid in sessions:
            sessions[event.sessionid].buffer[event.sequence] = event
    state.restore(sessions.values(), tombstones)
    return position


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=_default).encode()


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in the derived changelog")


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _session(session: Session) -> dict[str, Any]:
    return {
        "format": _FORMAT, "session_id": session.session_id,
        "next_sequence": session.next_sequence, "room": session.room,
        "started_at": session.started_at, "started": session.started,
        "closed": session.closed, "agent_ids": session.agent_ids,
        "participants": session.participants, "interruptions": session.interruptions,
        "tool_calls": session.tool_calls, "errors": session.errors,
        "last_time": session.last_time, "summarized": session.summarized,
        "summarized_at": session.summarized_at, "arrived_at": session.arrived_at,
        "skipped": session.skipped,
    }  # fmt: skip


def _load_session(data: dict[str, Any]) -> Session:
    closed = data["closed"]
    if closed is not None:
        closed["time"] = _time(closed["time"])
    return Session(
        session_id=data["session_id"], next_sequence=data["next_sequence"], room=data["room"],
        started_at=_time(data["started_at"]), started=data["started"], closed=closed,
        agent_ids=data["agent_ids"], participants=data["participants"],
        interruptions=data["interruptions"], tool_calls=data["tool_calls"],
        errors=data["errors"], last_time=_time(data["last_time"]),
        summarized=data["summarized"], summarized_at=data["summarized_at"],
        arrived_at=data["arrived_at"], skipped=data["skipped"],
    )  # fmt: skip


def _tombstone(tomb: Tombstone) -> dict[str, Any]:
    return {"format": _FORMAT, "tombstone": True, "session_id": tomb.session_id,
            "folded": tomb.folded, "dropped_at": tomb.dropped_at}  # fmt: skip


def _turn(session_id: str, turn: Turn) -> dict[str, Any]:
    return {
        "format": _FORMAT, "session_id": session_id, "turn_id": turn.turn_id,
        "user": turn.user, "user_latencies": turn.user_latencies, "answer": turn.answer,
        "texts": turn.texts, "interrupted": turn.interrupted,
        "answer_latencies": turn.answer_latencies, "calls": turn.calls,
        "language": turn.language, "revision": turn.revision,
        "revised_at": turn.revised_at, "emitted": turn.emitted,
    }  # fmt: skip


def _load_turn(data: dict[str, Any]) -> Turn:
    for part in (data["user"], data["answer"]):
        if part is not None:
            for name in _TIMES_TURN:
                if name in part:
                    part[name] = _time(part[name])
    return Turn(
        turn_id=data["turn_id"], user=data["user"], user_latencies=data["user_latencies"],
        answer=data["answer"], texts=data["texts"], interrupted=data["interrupted"],
        answer_latencies=data["answer_latencies"], calls=data["calls"],
        language=data["language"], revision=data["revision"],
        revised_at=_time(data["revised_at"]), emitted=data["emitted"],
    )  # fmt: skip
