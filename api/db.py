"""PostgreSQL for the API: pools of autocommit connections.

The read queries of `projections.postgres.queries` are synchronous (psycopg), so most
routes run them with `Database.run` in Starlette's thread pool: one indexed statement
per call, the connection back in the pool at once. The transcript, the most read route,
runs its statement on psycopg's `AsyncConnectionPool` instead (`Database.connection`):
`bench/api_bench.py` measures the same read about 15 % faster there than through a
thread (no thread hop, no GIL hand-over), with a lower p99.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from starlette.concurrency import run_in_threadpool

from turnlog.api.errors import DependencyUnavailableError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Connection = psycopg.Connection[Any]
AsyncConnection = psycopg.AsyncConnection[Any]


class Database:
    def __init__(self, dsn: str, *, schema: str, size: int, timeout_s: float = 5.0) -> None:
        self.schema = schema
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            dsn, min_size=1, max_size=size, kwargs={"autocommit": True}, timeout=timeout_s,
            open=False, name="turnlog-api",
        )  # fmt: skip
        self.async_pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
            dsn, min_size=1, max_size=size, kwargs={"autocommit": True}, timeout=timeout_s,
            open=False, name="turnlog-api-async",
        )  # fmt: skip

    async def open(self) -> None:
        """Open the pools without waiting: the API starts (and says it is not ready)
        while PostgreSQL is down."""
        self.pool.open(wait=False)
        await self.async_pool.open(wait=False)

    async def close(self) -> None:
        self.pool.close()
        await self.async_pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection of the async pool, its failures translated as `call`'s."""
        try:
            async with self.async_pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as error:
            logger.warning("PostgreSQL unavailable: %s", error)
            raise DependencyUnavailableError(
                "PostgreSQL cannot be reached", dependency="postgres"
            ) from error
        except psycopg.errors.UndefinedTable as error:
            raise self._unmigrated(error) from error

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
            raise self._unmigrated(error) from error

    def _unmigrated(self, error: psycopg.Error) -> DependencyUnavailableError:
        logger.error("PostgreSQL schema %r is not migrated: %s", self.schema, error)
        return DependencyUnavailableError(
            f"PostgreSQL schema {self.schema!r} lacks the API's tables: apply the "
            "migrations (`turnlog stack up`)",
            dependency="postgres",
        )

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
