"""Read-model state the processor needs after a batch: the shared projection lock, and
the rows the derived records are built from.

`PostgresState` reads PostgreSQL on a small connection of its own (also the one that
holds the advisory lock, see `locks`); `MemoryState` reads an `InMemoryProjection`, for
tests and for tools that replay the log without a database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.postgres.tables import MESSAGES, SESSIONS
from turnlog.streams.derived import SessionRows, TurnRows
from turnlog.streams.locks import shared_projection_lock

TurnKey = tuple[str, str]
"""(session id, turn id)."""


class ProjectionState(Protocol):
    """What the processor reads from the PostgreSQL read models."""

    def locked(self) -> AbstractContextManager[None]:
        """Hold the shared projection lock (see `locks`) for the block."""
        ...

    def turns(self, keys: Iterable[TurnKey]) -> list[TurnRows]:
        """The rows of each turn of `keys` that has messages."""
        ...

    def closed_sessions(self, session_ids: Iterable[str]) -> list[SessionRows]:
        """The rows of each session of `session_ids` that is closed."""
        ...

    def close(self) -> None: ...


class PostgresState:
    """`ProjectionState` of a PostgreSQL schema, on one autocommit connection."""

    def __init__(self, dsn: str, *, schema: str) -> None:
        self._dsn = dsn
        self.schema = schema
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def _connection(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._dsn, autocommit=True, row_factory=dict_row)
        return self._conn

    @contextmanager
    def locked(self) -> Iterator[None]:
        with shared_projection_lock(self._connection()):
            yield

    def turns(self, keys: Iterable[TurnKey]) -> list[TurnRows]:
        wanted = sorted(set(keys))
        if not wanted:
            return []
        params = ([s for s, _ in wanted], [t for _, t in wanted])
        conn = self._connection()
        messages: dict[TurnKey, list[dict[str, Any]]] = defaultdict(list)
        for row in conn.execute(self._query(_TURN_MESSAGES, MESSAGES.name), params):
            messages[row["session_id"], row["turn_id"]].append(row)
        tools = {
            (r["session_id"], r["turn_id"]): int(r["calls"])
            for r in conn.execute(self._query(_TURN_TOOLS, "tool_calls"), params)
        }
        languages = {
            (r["session_id"], r["turn_id"]): r["language"]
            for r in conn.execute(self._query(_TURN_LANGUAGE, "transcriptions"), params)
        }
        sessions = self._sessions(sorted({s for s, _ in messages}))
        return [
            TurnRows(sessions[key[0]], rows, tools.get(key, 0), languages.get(key))
            for key, rows in messages.items()
            if key[0] in sessions
        ]

    def closed_sessions(self, session_ids: Iterable[str]) -> list[SessionRows]:
        sessions = self._sessions(sorted(set(session_ids)), closed_only=True)
        if not sessions:
            return []
        counts = {
            r["session_id"]: int(r["turns"])
            for r in self._connection().execute(
                self._query(_SESSION_TURNS, MESSAGES.name), (list(sessions),)
            )
        }
        return [SessionRows(row, counts.get(sid, 0)) for sid, row in sessions.items()]

    def _sessions(self, ids: Sequence[str], *, closed_only: bool = False) -> dict[str, Any]:
        if not ids:
            return {}
        query = sql.SQL("SELECT * FROM {} WHERE session_id = ANY(%s){}").format(
            sql.Identifier(self.schema, SESSIONS.name),
            sql.SQL(" AND status <> 'active'") if closed_only else sql.SQL(""),
        )
        rows = self._connection().execute(query, (list(ids),)).fetchall()
        return {row["session_id"]: row for row in rows}

    def _query(self, template: str, table: str) -> sql.Composed:
        return sql.SQL(template).format(table=sql.Identifier(self.schema, table))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


_KEYS = "JOIN unnest(%s::text[], %s::text[]) AS k(session_id, turn_id) USING (session_id, turn_id)"
_TURN_MESSAGES = f"SELECT * FROM {{table}} {_KEYS}"
_TURN_TOOLS = (
    f"SELECT session_id, turn_id, count(*) AS calls FROM {{table}} {_KEYS} GROUP BY 1, 2"
)
_TURN_LANGUAGE = (
    f"SELECT DISTINCT ON (session_id, turn_id) session_id, turn_id, language "
    f"FROM {{table}} {_KEYS} WHERE is_final AND language IS NOT NULL "
    f"ORDER BY session_id, turn_id, sequence DESC"
)
_SESSION_TURNS = (
    "SELECT session_id, count(DISTINCT turn_id) AS turns FROM {table} "
    "WHERE session_id = ANY(%s) AND role = 'assistant' AND turn_id IS NOT NULL GROUP BY 1"
)


class MemoryState:
    """`ProjectionState` of an `InMemoryProjection` (no lock: one writer, in memory)."""

    def __init__(self, projection: InMemoryProjection) -> None:
        self.projection = projection

    def locked(self) -> AbstractContextManager[None]:
        return nullcontext()

    def turns(self, keys: Iterable[TurnKey]) -> list[TurnRows]:
        wanted = set(keys)
        messages: dict[TurnKey, list[dict[str, Any]]] = defaultdict(list)
        for row in self.projection.rows(MESSAGES.name):
            if (row["session_id"], row["turn_id"]) in wanted:
                messages[row["session_id"], row["turn_id"]].append(row)
        tools: dict[TurnKey, int] = defaultdict(int)
        for row in self.projection.rows("tool_calls"):
            tools[row["session_id"], row["turn_id"]] += 1
        languages: dict[TurnKey, str] = {}
        for row in self.projection.rows("transcriptions"):  # by key: sequence order
            if row["is_final"] and row["language"] is not None:
                languages[row["session_id"], row["turn_id"]] = row["language"]
        sessions = {r["session_id"]: r for r in self.projection.rows(SESSIONS.name)}
        return [
            TurnRows(sessions[key[0]], rows, tools.get(key, 0), languages.get(key))
            for key, rows in sorted(messages.items())
            if key[0] in sessions
        ]

    def closed_sessions(self, session_ids: Iterable[str]) -> list[SessionRows]:
        wanted = set(session_ids)
        turns: dict[str, set[str]] = defaultdict(set)
        for row in self.projection.rows(MESSAGES.name):
            if row["role"] == "assistant" and row["turn_id"] is not None:
                turns[row["session_id"]].add(row["turn_id"])
        return [
            SessionRows(row, len(turns[row["session_id"]]))
            for row in self.projection.rows(SESSIONS.name)
            if row["session_id"] in wanted and row["status"] != "active"
        ]

    def close(self) -> None:
        pass
