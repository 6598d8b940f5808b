"""The apps the API benchmark serves beside the real one, each with one uvicorn worker.

- `baseline`: a bare FastAPI route returning a constant: what FastAPI and uvicorn cost
  on this machine, the denominator of every ratio.
- `pools`: the transcript read two ways, to choose how the API talks to PostgreSQL:
  `/sync/{id}` is the API's way (psycopg `ConnectionPool`, `queries.transcript` in
  Starlette's thread pool), `/async/{id}` the same statement on psycopg's
  `AsyncConnectionPool`. Both answer the API's `TranscriptOut`.

    uvicorn bench.api_apps:baseline | bench.api_apps:pools (TURNLOG_POSTGRES_DSN, _SCHEMA)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.concurrency import run_in_threadpool

from turnlog.api.models import TranscriptOut, TranscriptTurnOut
from turnlog.projections.postgres import queries
from turnlog.projections.postgres.models import TranscriptEntry

baseline = FastAPI()


@baseline.get("/constant")
async def constant() -> dict[str, str]:
    return {"status": "ok"}


def _pools_app() -> FastAPI:
    dsn = os.environ.get(
        "TURNLOG_POSTGRES_DSN", "postgresql://turnlog:turnlog@127.0.0.1:15432/turnlog"
    )
    schema = os.environ.get("TURNLOG_POSTGRES_SCHEMA", "public")
    size = int(os.environ.get("TURNLOG_API_PG_POOL_SIZE", "8"))
    sync_pool: ConnectionPool[Any] = ConnectionPool(
        dsn, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False
    )
    async_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False
    )
    statement = queries.transcript_statement(schema)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sync_pool.open(wait=True)
        await async_pool.open(wait=True)
        yield
        sync_pool.close()
        await async_pool.close()

    app = FastAPI(lifespan=lifespan)

    def read_sync(session_id: str) -> list[TranscriptEntry]:
        with sync_pool.connection() as conn:
            return queries.transcript(conn, session_id, schema=schema)

    @app.get("/sync/{session_id}")
    async def by_thread(session_id: str) -> TranscriptOut:
        entries = await run_in_threadpool(read_sync, session_id)
        return _shaped(session_id, entries)

    @app.get("/async/{session_id}")
    async def by_async_pool(session_id: str) -> TranscriptOut:
        async with async_pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(TranscriptEntry))
            await cur.execute(statement, (session_id, 0, queries.MAX_PAGE))
            entries = await cur.fetchall()
        return _shaped(session_id, entries)

    return app


def _shaped(session_id: str, entries: list[TranscriptEntry]) -> TranscriptOut:
    return TranscriptOut(
        session_id=session_id,
        turns=[TranscriptTurnOut.model_validate(e, from_attributes=True) for e in entries],
        next_after=None,
    )


def __getattr__(name: str) -> Any:
    if name == "pools":
        return _pools_app()
    raise AttributeError(name)
