"""Erasure: forget a session, or every session of a participant, in every copy.

One PostgreSQL transaction destroys the data keys (with the identities that index them),
marks the sessions erased and purges their personal read-model rows; sealed copies
elsewhere (the log, ClickHouse, derived topics, the DLQ, a gateway's spool) become
unreadable at that commit. Then Kafka gets tombstones for the compacted topics that hold
the subject's records (`turnlog.keys`, `turnlog.sessions`) and the `erasure.completed`
record (`turnlog.erasures`): the proof, naming sessions and steps, never content. If
Kafka is down, the erasure stays `pending` and `complete_pending` finishes it later. An
erasure is idempotent: a second request for an erased session returns the first one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import psycopg
import uuid_utils
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from psycopg import sql

from turnlog.projections.postgres.erasure import purge_sessions
from turnlog.schemas import (
    ERASURES_TOPIC,
    KEYS_TOPIC,
    SESSIONS_TOPIC,
    ErasureCompleted,
    ErasureScope,
    ErasureStep,
    encode,
    new_event,
    stream_source,
)
from turnlog.schemas.sealing import subject_digest

logger = logging.getLogger(__name__)

KAFKA_TIMEOUT_S: Final = 10.0
Status = Literal["completed", "pending"]


@dataclass
class Erasure:
    """One erasure as stored (`erasures`) and shown."""

    erasure_id: str
    scope: ErasureScope
    requested_by: str
    requested_at: datetime
    session_ids: list[str]
    reason: str | None = None
    subject_digest: str | None = None
    completed_at: datetime | None = None
    steps: list[ErasureStep] = field(default_factory=list)
    already: bool = False
    """True when every session was erased before this request (nothing new was done)."""

    @property
    def status(self) -> Status:
        return "completed" if self.completed_at is not None else "pending"


class UnknownSubjectError(LookupError):
    """Nothing is recorded for the session id or identity asked for."""


def _t(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def sessions_of_identity(conn: psycopg.Connection[Any], identity: str, *, schema: str) -> list[str]:
    """Sessions whose key lists `identity` as a subject, erased ones included."""
    rows = conn.execute(
        sql.SQL(
            "SELECT key_id FROM {} WHERE subject_digest = %s UNION "
            "SELECT unnest(session_ids) FROM {} WHERE subject_digest = %s ORDER BY 1"
        ).format(_t(schema, "key_subjects"), _t(schema, "erasures")),
        (subject_digest(identity), subject_digest(identity)),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _known(conn: psycopg.Connection[Any], session_ids: list[str], *, schema: str) -> list[str]:
    rows = conn.execute(
        sql.SQL(
            "SELECT session_id FROM {} WHERE session_id = ANY(%s) UNION "
            "SELECT key_id FROM {} WHERE key_id = ANY(%s) UNION "
            "SELECT session_id FROM {} WHERE session_id = ANY(%s)"
        ).format(_t(schema, "sessions"), _t(schema, "data_keys"), _t(schema, "erased_sessions")),
        (session_ids, session_ids, session_ids),
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def erase_in_postgres(
    conn: psycopg.Connection[Any],
    *,
    schema: str,
    scope: ErasureScope,
    session_ids: list[str],
    requested_by: str,
    reason: str | None = None,
    identity: str | None = None,
) -> Erasure:
    """The PostgreSQL part of an erasure, in one transaction (`conn` in autocommit mode);
    `UnknownSubjectError` when none of `session_ids` was ever recorded."""
    known = _known(conn, session_ids, schema=schema)
    if not known:
        raise UnknownSubjectError(
            "no session " + ", ".join(repr(s) for s in session_ids[:3]) + " is recorded"
        )
    now = datetime.now(UTC)
    erasure = Erasure(
        erasure_id=str(uuid_utils.uuid7()), scope=scope, requested_by=requested_by,
        requested_at=now, session_ids=known, reason=reason,
        subject_digest=subject_digest(identity) if identity is not None else None,
    )  # fmt: skip
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT session_id, erasure_id FROM {} WHERE session_id = ANY(%s)").format(
                _t(schema, "erased_sessions")
            ),
            (known,),
        )
        erased_before = {str(session): str(by) for session, by in cur.fetchall()}
        fresh = [s for s in known if s not in erased_before]
        if not fresh and len(set(erased_before.values())) == 1:  # asked again: the same answer
            earlier = _load(cur, schema, next(iter(erased_before.values())), already=True)
            if earlier is not None:  # always: erased_sessions references erasures
                return earlier
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (erasure_id, scope, requested_by, requested_at, reason, "
                "subject_digest, session_ids) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ).format(_t(schema, "erasures")),
            (erasure.erasure_id, scope, requested_by, now, reason, erasure.subject_digest, known),
        )
        # ROW EXCLUSIVE here waits for batches that hold SHARE (erasure.erased_among)
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (session_id, erasure_id, erased_at) "
                "SELECT unnest(%s::text[]), %s, %s ON CONFLICT DO NOTHING"
            ).format(_t(schema, "erased_sessions")),
            (fresh, erasure.erasure_id, now),
        )
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE key_id = ANY(%s)").format(_t(schema, "data_keys")),
            (known,),
        )
        keys = max(cur.rowcount, 0)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE key_id = ANY(%s)").format(_t(schema, "key_subjects")),
            (known,),
        )
        rows = purge_sessions(cur, schema, known)
        erasure.steps = [
            ErasureStep(store="key_store", action="deleted data keys and their subjects",
                        count=keys),
            ErasureStep(store="postgres", action="purged personal read-model rows", count=rows),
            ErasureStep(store="clickhouse", action="holds sealed fields only: unreadable "
                        "without the key, no mutation needed", count=0),
        ]  # fmt: skip
        _save_steps(cur, schema, erasure)
    # plain VACUUM: dead versions of the key rows leave the table's pages now
    for table in ("data_keys", "key_subjects"):
        conn.execute(sql.SQL("VACUUM {}").format(_t(schema, table)))
    return erasure


def _save_steps(cur: psycopg.Cursor[Any], schema: str, erasure: Erasure) -> None:
    cur.execute(
        sql.SQL("UPDATE {} SET steps = %s::jsonb, completed_at = %s WHERE erasure_id = %s").format(
            _t(schema, "erasures")
        ),
        (
            json.dumps([s.model_dump() for s in erasure.steps]),
            erasure.completed_at,
            erasure.erasure_id,
        ),
    )


_COLUMNS: Final = (
    "erasure_id, scope, requested_by, requested_at, session_ids, reason, subject_digest, "
    "completed_at, steps"
)


def _row(row: Any, *, already: bool = False) -> Erasure:
    (erasure_id, scope, by, at, sessions, reason, digest, completed, steps) = row
    return Erasure(
        erasure_id=str(erasure_id), scope=scope, requested_by=by, requested_at=at,
        session_ids=list(sessions), reason=reason, subject_digest=digest,
        completed_at=completed, steps=[ErasureStep.model_validate(s) for s in steps],
        already=already,
    )  # fmt: skip


def _load(cur: psycopg.Cursor[Any], schema: str, erasure_id: str, *,
          already: bool = False) -> Erasure | None:  # fmt: skip
    cur.execute(
        sql.SQL(f"SELECT {_COLUMNS} FROM {{}} WHERE erasure_id = %s").format(
            _t(schema, "erasures")
        ),
        (erasure_id,),
    )
    row = cur.fetchone()
    return _row(row, already=already) if row is not None else None


def get_erasure(conn: psycopg.Connection[Any], erasure_id: str, *, schema: str) -> Erasure | None:
    with conn.cursor() as cur:
        return _load(cur, schema, erasure_id)


def erasures_of_sessions(
    conn: psycopg.Connection[Any], session_ids: list[str], *, schema: str
) -> dict[str, Erasure]:
    """Session id -> the erasure that erased it, for the sessions among `session_ids`."""
    if not session_ids:
        return {}
    rows = conn.execute(
        sql.SQL(
            f"SELECT es.session_id, {_COLUMNS} "
            "FROM {} es JOIN {} e USING (erasure_id) WHERE es.session_id = ANY(%s)"
        ).format(_t(schema, "erased_sessions"), _t(schema, "erasures")),
        (session_ids,),
    ).fetchall()
    return {str(r[0]): _row(r[1:]) for r in rows}


def pending_erasures(conn: psycopg.Connection[Any], *, schema: str) -> list[Erasure]:
    rows = conn.execute(
        sql.SQL(
            f"SELECT {_COLUMNS} FROM {{}} WHERE completed_at IS NULL ORDER BY requested_at"
        ).format(_t(schema, "erasures"))
    ).fetchall()
    return [_row(r) for r in rows]


async def publish_erasure(erasure: Erasure, *, bootstrap: str, topic_prefix: str) -> None:
    """Tombstones for the compacted topics and the `erasure.completed` record; raises
    `KafkaError` (the erasure then stays pending)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000),
    )  # fmt: skip
    try:
        await producer.start()
        for topic in (KEYS_TOPIC, SESSIONS_TOPIC):
            for session_id in erasure.session_ids:
                await producer.send(topic_prefix + topic, key=session_id.encode(), value=None)
        completed = datetime.now(UTC)
        steps = [
            *[s for s in erasure.steps if s.store != "kafka"],
            ErasureStep(store="kafka", action=f"tombstoned {KEYS_TOPIC} and {SESSIONS_TOPIC}",
                        count=2 * len(erasure.session_ids)),
            ErasureStep(store="gateway", action="spooled and dead-lettered copies are sealed: "
                        "unreadable without the key, dropped by retention", count=0),
        ]  # fmt: skip
        record = new_event(
            ErasureCompleted(
                erasure_id=erasure.erasure_id, scope=erasure.scope,
                session_ids=tuple(erasure.session_ids), requested_by=erasure.requested_by,
                requested_at=erasure.requested_at, reason=erasure.reason, steps=tuple(steps),
                subject_digest=erasure.subject_digest,
            ),
            session_id=erasure.erasure_id, sequence=1, source=stream_source("turnlog", "erasure"),
            subject="erasure", time=completed,
        )  # fmt: skip
        await producer.send_and_wait(
            topic_prefix + ERASURES_TOPIC, key=erasure.erasure_id.encode(), value=encode(record)
        )
        erasure.steps = steps
        erasure.completed_at = completed
    finally:
        await producer.stop()


def mark_completed(conn: psycopg.Connection[Any], erasure: Erasure, *, schema: str) -> None:
    with conn.transaction(), conn.cursor() as cur:
        _save_steps(cur, schema, erasure)


async def finish(
    erasure: Erasure, conn_call: Any, *, schema: str, bootstrap: str, topic_prefix: str
) -> Erasure:
    """The Kafka part, then the record marked completed; pending if Kafka cannot be
    reached (logged, never raised: the keys are gone either way)."""
    if erasure.completed_at is not None:
        return erasure
    try:
        await publish_erasure(erasure, bootstrap=bootstrap, topic_prefix=topic_prefix)
    except (KafkaError, OSError, TimeoutError) as error:
        logger.warning("erasure %s: Kafka unreachable (%s); it stays pending",
                       erasure.erasure_id, type(error).__name__)  # fmt: skip
        return erasure
    await conn_call(mark_completed, erasure, schema=schema)
    return erasure


async def erase(
    conn_call: Any, *, schema: str, bootstrap: str, topic_prefix: str, **request: Any
) -> Erasure:
    """A whole erasure: `erase_in_postgres(**request)` through `conn_call`, then `finish`.
    Raises `UnknownSubjectError`; pending (not raised) while Kafka is down."""
    erasure: Erasure = await conn_call(erase_in_postgres, schema=schema, **request)
    return await finish(erasure, conn_call, schema=schema, bootstrap=bootstrap,
                        topic_prefix=topic_prefix)  # fmt: skip


def sessions_older_than(
    conn: psycopg.Connection[Any], cutoff: datetime, *, schema: str, limit: int = 1000
) -> list[str]:
    """Sessions that started before `cutoff` and are not erased yet, oldest first."""
    rows = conn.execute(
        sql.SQL(
            "SELECT s.session_id FROM {} s WHERE s.started_at < %s AND NOT EXISTS "
            "(SELECT 1 FROM {} e WHERE e.session_id = s.session_id) "
            "ORDER BY s.started_at LIMIT %s"
        ).format(_t(schema, "sessions"), _t(schema, "erased_sessions")),
        (cutoff, limit),
    ).fetchall()
    return [str(r[0]) for r in rows]


async def complete_pending(
    conn_call: Any, *, schema: str, bootstrap: str, topic_prefix: str
) -> int:
    """Finish the erasures whose Kafka part is still to do; how many completed."""
    done = 0
    for erasure in await conn_call(pending_erasures, schema=schema):
        await finish(erasure, conn_call, schema=schema, bootstrap=bootstrap,
                     topic_prefix=topic_prefix)  # fmt: skip
        done += erasure.completed_at is not None
    return done
