"""Conversation read models from PostgreSQL: the session list, one session, its transcript;
its full event history from the analytics store; its history and live events from Kafka."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from psycopg import sql
from psycopg.rows import class_row
from pydantic import Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from turnlog.api.base import ApiModel, QueryTime
from turnlog.api.db import Connection
from turnlog.api.deps import ReadCaller
from turnlog.api.erasure import Erasure, erasures_of_sessions
from turnlog.api.errors import (
    DependencyUnavailableError,
    InvalidRequestError,
    NotFoundError,
    responses,
)
from turnlog.api.live import StreamRequest, session_stream
from turnlog.api.models import (
    ErasureOut,
    EventPageOut,
    SessionDetailOut,
    SessionEventOut,
    SessionSummaryOut,
    TranscriptOut,
)
from turnlog.api.privacy import Opener, event_opener
from turnlog.api.services import Services
from turnlog.projections.clickhouse import queries as ch_queries
from turnlog.projections.postgres import queries as pg_queries
from turnlog.projections.postgres.models import SessionCursor, TranscriptEntry
from turnlog.schemas.sealing import DataKey, is_sealed

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

SessionId = Annotated[
    str, Path(min_length=1, max_length=200, description="The session id (`sessionid`).")
]
TRANSCRIPT_PAGE: Final = 500


class SessionPageOut(ApiModel):
    """A page of sessions, newest first."""

    items: list[SessionSummaryOut]
    next_cursor: str | None = Field(examples=["MjAyNS0wMy0wMVQxMDowMDowMCswMDowMHxzZXNzXzE"])
    """Pass as `cursor` for the next page; null on the last one."""


@router.get("", summary="List sessions", responses=responses(400, 401, 403, 422, 429, 503))
async def list_sessions(
    caller: ReadCaller,
    room: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    agent: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    status: Literal["active", "closed", "failed"] | None = None,
    started_from: Annotated[QueryTime | None, Query(description="Inclusive.")] = None,
    started_before: Annotated[QueryTime | None, Query(description="Exclusive.")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=pg_queries.MAX_PAGE)] = 50,
) -> SessionPageOut:
    """Sessions newest first (by start time, then id), filtered by room, agent name,
    status and start time. Keyset pagination: pages stay stable while sessions are
    added. Scope: `read`."""
    services = caller.services
    after = None
    if cursor is not None:
        try:
            after = SessionCursor.decode(cursor)
        except ValueError as error:
            raise InvalidRequestError("cursor is not one this API gave", field="cursor") from error
    page = await services.db.run(
        pg_queries.list_sessions, schema=services.db.schema, room=room, agent=agent,
        status=status, started_from=started_from, started_before=started_before, after=after,
        limit=limit,
    )  # fmt: skip
    privacy = await services.db.run(_privacy, services, [s.session_id for s in page.items])
    return SessionPageOut(
        items=[
            privacy.summary(SessionSummaryOut.model_validate(s, from_attributes=True))
            for s in page.items
        ],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )


@router.get(
    "/{session_id}", summary="One session", responses=responses(401, 403, 404, 422, 429, 503)
)
async def get_session(session_id: SessionId, caller: ReadCaller) -> SessionDetailOut:
    """The session with its counts, participants, models and latency statistics.
    Scope: `read`."""
    services = caller.services
    detail = await services.db.run(pg_queries.session_detail, session_id, schema=services.db.schema)
    if detail is None:
        raise NotFoundError(f"no session {session_id!r}", field="session_id")
    fields = {f.name: getattr(detail, f.name) for f in dataclasses.fields(detail)}
    summary = dataclasses.asdict(fields.pop("summary"))
    fields["latency"] = dataclasses.asdict(fields["latency"])
    fields["participants"] = [dataclasses.asdict(p) for p in fields["participants"]]
    privacy = await services.db.run(_privacy, services, [session_id])
    key = privacy.keys.get(session_id)
    opened = services.opener.open(summary | fields, key)
    opened["erasure"] = privacy.erasure_of(session_id)
    return SessionDetailOut.model_validate(opened)


@dataclass(frozen=True, slots=True)
class _Privacy:
    """The keys and erasures of the sessions a response shows."""

    opener: Opener
    keys: dict[str, DataKey | None]
    erasures: dict[str, Erasure]

    def erasure_of(self, session_id: str) -> ErasureOut | None:
        erasure = self.erasures.get(session_id)
        return ErasureOut.of(erasure) if erasure is not None else None

    def summary(self, item: SessionSummaryOut) -> SessionSummaryOut:
        key = self.keys.get(item.session_id)
        return item.model_copy(update={
            "participants": self.opener.open(item.participants, key),
            "erasure": self.erasure_of(item.session_id),
        })  # fmt: skip


def _privacy(conn: Connection, services: Services, session_ids: list[str]) -> _Privacy:
    opener = services.opener
    return _Privacy(
        opener,
        opener.keys(conn, session_ids),
        erasures_of_sessions(conn, session_ids, schema=services.db.schema),
    )


def _exists_statement(schema: str) -> sql.Composed:
    return sql.SQL("SELECT 1 FROM {} WHERE session_id = %s").format(
        sql.Identifier(schema, "sessions")
    )


def _exists(conn: Connection, session_id: str, *, schema: str) -> bool:
    return conn.execute(_exists_statement(schema), (session_id,)).fetchone() is not None


@dataclass(frozen=True, slots=True)
class _TranscriptPage:
    """`TranscriptOut` over the query's own rows: serialized without copying them into
    models first (the transcript is the most read route)."""

    session_id: str
    turns: list[TranscriptEntry]
    next_after: int | None


_TRANSCRIPT_JSON: Final = TypeAdapter(_TranscriptPage)


@router.get(
    "/{session_id}/transcript",
    summary="A session's transcript",
    response_model=TranscriptOut,
    responses=responses(401, 403, 404, 422, 429, 503),
)
async def get_transcript(
    session_id: SessionId,
    caller: ReadCaller,
    after_sequence: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=TRANSCRIPT_PAGE)] = TRANSCRIPT_PAGE,
) -> Response:
    """The committed turns (user and agent messages) in commit order, with whether each
    was interrupted and its latency breakdown. Pages by `after_sequence`. Scope: `read`."""
    services = caller.services
    schema = services.db.schema
    async with services.db.connection() as conn:
        cur = conn.cursor(row_factory=class_row(TranscriptEntry))
        await cur.execute(
            pg_queries.transcript_statement(schema), (session_id, after_sequence, limit)
        )
        entries = await cur.fetchall()
        if not entries:
            found = await conn.execute(_exists_statement(schema), (session_id,))
            if await found.fetchone() is None:
                raise NotFoundError(f"no session {session_id!r}", field="session_id")
    if any(is_sealed(entry.text) for entry in entries):
        opener = services.opener
        key = (await services.db.run(opener.keys, [session_id]))[session_id]
        entries = [
            dataclasses.replace(entry, text=opener.open(entry.text, key)) for entry in entries
        ]
    page = _TranscriptPage(
        session_id, entries, entries[-1].sequence if len(entries) == limit else None
    )
    return Response(_TRANSCRIPT_JSON.dump_json(page), media_type="application/json")


@router.get(
    "/{session_id}/events",
    summary="A session's event history",
    responses=responses(401, 403, 404, 422, 429, 502, 503),
)
async def get_events(
    session_id: SessionId,
    caller: ReadCaller,
    after: Annotated[int, Query(ge=0, le=2**62, description="Sequence to start after.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPageOut:
    """Every event of the session as recorded (CloudEvents `data` included), in sequence
    order, from the analytics store. Pages by `after` = the previous `next_after`.
    Scope: `read`."""
    services = caller.services
    exists = await services.db.run(_exists, session_id, schema=services.db.schema)
    if not exists:
        raise NotFoundError(f"no session {session_id!r}", field="session_id")
    page = await run_in_threadpool(
        services.analytics.call,
        lambda store, db: ch_queries.session_events(
            store, db, session_id, after=after, limit=limit
        ),
    )
    events = [SessionEventOut.model_validate(e, from_attributes=True) for e in page.events]
    if events:
        opener = services.opener
        key = (await services.db.run(opener.keys, [session_id]))[session_id]
        events = [e.model_copy(update={"data": opener.open(e.data, key)}) for e in events]
    return EventPageOut(session_id=session_id, events=events, next_after=page.next_after)


async def _counted(services: Services, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`stream`, counted among the open live streams while it runs."""
    services.live_streams += 1
    try:
        async for message in stream:
            yield message
    finally:
        services.live_streams -= 1


def _started_at(conn: Connection, session_id: str, *, schema: str) -> tuple[bool, datetime | None]:
    """(whether the session exists, when it started)."""
    row = conn.execute(
        sql.SQL("SELECT started_at FROM {} WHERE session_id = %s").format(
            sql.Identifier(schema, "sessions")
        ),
        (session_id,),
    ).fetchone()
    return (row is not None, row[0] if row is not None else None)


@router.get(
    "/{session_id}/live",
    summary="A session's events, history then live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "An event stream: first every event after `after` (or the "
            "`Last-Event-ID` header) from the log, then `ready` (`history`: how many), then "
            "each new event as it is recorded. Each event: `id` = its sequence (one more "
            "than the previous: no gap, no duplicate), `event` = its CloudEvents type, "
            "`data` = the CloudEvent JSON. A `: keep-alive` comment when quiet; `error` when "
            "the stream cannot go on (reconnect with `Last-Event-ID`); it ends after "
            "session.closed.",
            "content": {"text/event-stream": {
                "schema": {"type": "string"},
                "example": "id: 7\nevent: turnlog.user.transcribed.v1\ndata: {...}\n\n"
                'event: ready\ndata: {"session_id": "sess_1", "after": 6, "history": 1}\n\n',
            }},
        },
        **responses(401, 403, 404, 422, 429, 503),
    },
)  # fmt: skip
async def live_events(
    session_id: SessionId,
    caller: ReadCaller,
    after: Annotated[
        int, Query(ge=0, le=2**62, description="Deliver the events after this sequence.")
    ] = 0,
    history: Annotated[
        Literal["events", "batched"],
        Query(description="`batched`: the history as `history` messages, each a JSON array "
              "of events with the last one's sequence as its `id` (far faster for a browser "
              "to take in); live events stay one message each."),
    ] = "events",
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=2**62,
               description="What a reconnecting EventSource sends: wins over `after`."),
    ] = None,
) -> StreamingResponse:  # fmt: skip
    """Follow a session without missing an event: its history from the Kafka log, then
    its new events as they arrive, one process-wide Kafka reader for every viewer.
    Scope: `read`."""
    services = caller.services
    exists, started_at = await services.db.run(_started_at, session_id, schema=services.db.schema)
    if not exists:
        raise NotFoundError(f"no session {session_id!r}", field="session_id")
    settings = services.settings
    if services.live_streams >= settings.live_streams_max:
        raise DependencyUnavailableError(
            f"{settings.live_streams_max} live streams are open already",
            dependency="live-streams",
        )
    partition = await services.kafka.partition_of(settings.events_topic, session_id)
    key = (await services.db.run(services.opener.keys, [session_id]))[session_id]
    services.metrics.live_streams.inc()
    request = StreamRequest(
        session_id, partition, last_event_id if last_event_id is not None else after, started_at,
        batched=history == "batched", open_value=event_opener(services.opener, key),
    )  # fmt: skip
    stream = _counted(services, session_stream(
        services.live_hub, request, topic=settings.events_topic,
        heartbeat_s=settings.live_heartbeat_s,
    ))  # fmt: skip
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
