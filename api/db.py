"""PostgreSQL for the API: a pool of autocommit connections, used from worker threads.

The read queries of `projections.postgres.queries` are synchronous (psycopg), so the
routes run them with `Database.run` in Starlette's thread pool: one indexed statement
per call, the connection back in the pool at once. (Measured against psycopg's
AsyncConnectionPool in `bench/api_transcript.py`.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.concurrency import run_in_threadpool

from api.errors import DependencyUnavailableError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Connection = psycopg.Connection[Any]


class Database:
    def __init__(self, dsn: str, *, schema: str, size: int, timeout_s: float = 5.0) -> None:
        self.schema = schema
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            dsn, min_size=1, max_size=size, kwargs={"autocommit": True}, timeout=timeout_s,
            open=False, name="turnlog-api",
        )  # fmt: skip

    def open(self) -> None:
        """Open the pool without waiting: the API starts (and says it is not ready)
        while PostgreSQL is down."""
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    def call(
        self, read: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read(conn, *args, **kwargs)` on a pooled connection (blocking)."""
        try:
            with self.pool.connection() as conn:
                return read(conn, *args, **kwargs)
        except (psycopg.OperationalError, PoolTimeout) as error:
            logger.warning("PostgreSQL unavailable: %s", error)
            raise DependencyUnavailableError(
                "PostgreSQL cannot be reached", dependency="postgres"
            ) from error
        except psycopg.errors.UndefinedTable as error:
            logger.error("PostgreSQL schema %r is not migrated: %s", self.schema, error)
            raise DependencyUnavailableError(
                f"PostgreSQL schema {self.schema!r} lacks the API's tables: apply the "
                "migrations (`turnlog stack up`)",
                dependency="postgres",
            ) from error

    async def run(
        self, read: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`call` in a worker thread."""
        return await run_in_threadpool(partial(self.call, read, *args, **kwargs))

    def ping(self, conn: Connection) -> None:
        """Raises unless the read models and the API's tables are in the schema."""
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
            (f'"{self.schema}".sessions', f'"{self.schema}".api_keys'),
        ).fetchone()
        if row is None or not all(row):
            raise DependencyUnavailableError(
                f"PostgreSQL schema {self.schema!r} lacks the read models or the API's "
                "tables: apply the migrations (`turnlog stack up`)",
                dependency="postgres",
            )
