"""Fold row operations into one row per table and key, by the tables' merge rules.

The writer folds a batch before it talks to PostgreSQL: a session's hundred events become
one session row, and each statement then touches a key once (which `ON CONFLICT DO UPDATE`
requires). Because every merge rule is associative and commutative, folding first and
merging the folded row into the stored one gives the same row as merging each write in
turn. The in-memory projection keeps its whole state in a `Fold`; the writer builds its
statements' parameters with `BatchRows`, the same rows in one pass (tested equal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any, Final

from turnlog.projections.postgres.rows import (
    SESSION_ACTIVITY_ONLY,
    Insert,
    RowOp,
    message_counters,
    message_row,
    room_of,
    row_ops,
    transcription_row,
)
from turnlog.projections.postgres.statements import column_params, upsert_params
from turnlog.projections.postgres.tables import SESSIONS, TABLES, merge_into, new_row
from turnlog.schemas import CloudEvent, ConversationItemAdded, UsageUpdated, UserTranscribed

Row = dict[str, Any]
"""A complete row: every column of its table, key columns included."""


class Fold:
    """Rows by table, then by key, merged from the row operations added so far."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in TABLES}

    def add(self, op: RowOp) -> None:
        rows = self.tables[op.table]
        row = rows.get(op.key)
        if row is None:
            rows[op.key] = new_row(TABLES[op.table], op.key, op.values)
        elif not isinstance(op, Insert):
            merge_into(TABLES[op.table], row, op.values)

    def add_all(self, ops: Iterable[RowOp]) -> None:
        for op in ops:
            self.add(op)

    def rows(self, table: str) -> list[Row]:
        """The rows of `table`, ordered by key."""
        rows = self.tables[table]
        return [rows[key] for key in sorted(rows)]

    def merge(self, other: Fold) -> None:
        """Merge every row of `other` into this fold, as if its operations were added."""
        for name, rows in other.tables.items():
            table = TABLES[name]
            mine = self.tables[name]
            for key, row in rows.items():
                current = mine.get(key)
                if current is None:
                    mine[key] = dict(row)
                elif not table.facts_only:
                    values = {c.name: row[c.name] for c in table.columns}
                    merge_into(table, current, values)


class BatchRows:
    """The rows of one batch of distinct events, as `upsert` parameters, in one pass.

    The common events make no row operation: they merge into their session row in place,
    and a message or a transcription, one row per event, stays a tuple in column order
    until the batch's columns are cut from them; of a session's usage events only the
    latest makes its row values. The rarer events go through `row_ops` and a `Fold`.
    Each (sessionid, sequence) must come once (the writer drops repeats): facts are not
    checked against each other, and a usage event is compared by sequence alone."""

    def __init__(self) -> None:
        self._fold = Fold()
        self._sessions = self._fold.tables[SESSIONS.name]
        self._facts: dict[str, list[tuple[Any, ...]]] = {
            name: [] for name, table in TABLES.items() if table.facts_only
        }
        self._messages = self._facts["messages"]
        self._transcriptions = self._facts["transcriptions"]
        self._usage: dict[str, CloudEvent[Any]] = {}
        """Session id -> its latest usage event so far, not yet added."""

    def add(self, event: CloudEvent[Any]) -> None:
        """Add the rows of `event`; `UnhandledEventError` as `row_ops`."""
        self.add_all((event,))

    def add_all(self, events: Iterable[CloudEvent[Any]]) -> None:
        """`add` each event; one loop, as this is the writer's per-event work."""
        touch, messages, transcriptions = self._touch, self._messages, self._transcriptions
        usage = self._usage
        for event in events:
            kind = type(event.data)
            if kind in SESSION_ACTIVITY_ONLY:
                touch(event, None)
            elif kind is UserTranscribed:
                touch(event, None)
                transcriptions.append(transcription_row(event))
            elif kind is ConversationItemAdded:
                touch(event, message_counters(event.data))
                messages.append(message_row(event))
            elif kind is UsageUpdated:
                # Only the session's latest usage survives the fold (a `LATEST` group):
                # hold it back, and let the others only touch their session.
                kept = usage.get(event.sessionid)
                if kept is None or kept.sequence < event.sequence:
                    usage[event.sessionid] = event
                    if kept is not None:
                        touch(kept, None)
                else:
                    touch(event, None)
            else:
                self._add_ops(event)

    def _add_ops(self, event: CloudEvent[Any]) -> None:
        for op in row_ops(event):
            if isinstance(op, Insert):
                names = _VALUE_NAMES[op.table]
                self._facts[op.table].append((*op.key, *(op.values[n] for n in names)))
            else:
                self._fold.add(op)

    def params(self) -> dict[str, list[list[Any]]]:
        """Each table's `statements.upsert` parameters, rows ordered by key; tables without
        rows are left out. Equal to `upsert_params` of a `Fold` of the same events."""
        for event in self._usage.values():
            self._add_ops(event)
        self._usage.clear()
        params: dict[str, list[list[Any]]] = {}
        for name, table in TABLES.items():
            facts = self._facts.get(name)
            if facts is None:
                rows = self._fold.rows(name)
                if rows:
                    params[name] = upsert_params(table, rows)
            elif facts:
                facts.sort(key=_KEY_OF_FACT[name])
                params[name] = column_params(table, list(zip(*facts, strict=True)))
        return params

    def _touch(self, event: CloudEvent[Any], counters: Mapping[str, int] | None) -> None:
        """What `rows._session(event, **counters)` then `Fold.add` do, without either: the
        session columns' rules (`tables.SESSIONS`) applied by hand."""
        key = (event.sessionid,)
        room = event.subject
        if "\x00" in room:
            room = room_of(event)
        time = event.time
        sequence = event.sequence
        row = self._sessions.get(key)
        if row is None:
            values = {"room": room, "started_at": time, "last_event_at": time,
                      "last_sequence": sequence, "event_count": 1}  # fmt: skip
            if counters:
                values.update(counters)
            self._sessions[key] = new_row(SESSIONS, key, values)
            return
        current = row["room"]
        if current is None or room < current:
            row["room"] = room
        current = row["started_at"]
        if current is None or time < current:
            row["started_at"] = time
        current = row["last_event_at"]
        if current is None or time > current:
            row["last_event_at"] = time
        current = row["last_sequence"]
        if current is None or sequence > current:
            row["last_sequence"] = sequence
        row["event_count"] += 1
        if counters:
            for name, count in counters.items():
                row[name] += count


_VALUE_NAMES: Final = {
    name: tuple(c.name for c in table.columns) for name, table in TABLES.items()
}
_KEY_OF_FACT: Final = {
    name: itemgetter(*range(len(table.key))) for name, table in TABLES.items() if table.facts_only
}
