"""How the API reads the analytics store, and runs analysts' SQL on it.

With a ClickHouse server the API connects itself (clickhouse-connect). An embedded chDB
folder belongs to the streams worker, so the API reads through the loopback query
endpoint the worker publishes (`open_reader`); the endpoint is looked up again after a
failure, since a restarted worker publishes a new port and token. Blocking calls: the
routes run them in worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from turnlog.api.errors import DependencyUnavailableError, UpstreamError
from turnlog.projections.clickhouse.analyst import (
    AnalystQueryError,
    QueryResult,
    run_readonly_query,
)
from turnlog.projections.clickhouse.query_endpoint import (
    EndpointStore,
    chdb_folder,
    published_endpoint,
    query_endpoint,
)
from turnlog.projections.clickhouse.store import (
    AnalyticsStore,
    AnalyticsStoreError,
    QueryFailedError,
    connect,
)

T = TypeVar("T")


class Analytics:
    """The analytics store of `url` (or a given `store`), opened on first use."""

    def __init__(self, url: str, *, database: str, store: AnalyticsStore | None = None) -> None:
        self.url = url
        self.database = database
        self._given = store
        self._store: AnalyticsStore | None = store
        self._lock = threading.Lock()

    def store(self) -> AnalyticsStore:
        with self._lock:
            if self._store is None:
                self._store = self._open()
            return self._store

    def _open(self) -> AnalyticsStore:
        if self.url.startswith("chdb:"):
            return EndpointStore(published_endpoint(chdb_folder(self.url)))
        return connect(self.url)

    def call(self, read: Callable[[AnalyticsStore, str], T]) -> T:
        """`read(store, database)`; an unreachable store is `DependencyUnavailableError`,
        a failed query `UpstreamError`."""
        try:
            return read(self.store(), self.database)
        except QueryFailedError as error:
            raise UpstreamError(f"the analytics query failed: {error}") from error
        except (AnalyticsStoreError, OSError) as error:
            self._reset()
            raise DependencyUnavailableError(
                f"the analytics store cannot be reached: {error}", dependency="analytics"
            ) from error

    def readonly_query(
        self,
        sql: str,
        *,
        timeout_s: float,
        max_rows: int,
        parameters: Mapping[str, Any] | None,
    ) -> QueryResult:
        """An analyst's statement with ClickHouse's read-only guards; raises the typed
        `AnalystQueryError`s for the route to map."""
        try:
            store = self.store()
            if isinstance(store, EndpointStore):
                # The endpoint applies the guards itself; ask it for these limits.
                endpoint = published_endpoint(chdb_folder(self.url))
                return query_endpoint(
                    endpoint.url, sql, token=endpoint.token, timeout_s=timeout_s,
                    max_rows=max_rows, database=self.database, parameters=parameters,
                )  # fmt: skip
            return run_readonly_query(
                store, sql, timeout_s=timeout_s, max_rows=max_rows, database=self.database,
                parameters=parameters,
            )  # fmt: skip
        except AnalystQueryError:
            raise
        except (AnalyticsStoreError, OSError) as error:
            self._reset()
            raise DependencyUnavailableError(
                f"the analytics store cannot be reached: {error}", dependency="analytics"
            ) from error

    def ping(self) -> None:
        """Raises when the store does not answer or lacks the analytics database."""
        rows = self.call(
            lambda store, db: store.query(
                "SELECT count() FROM system.databases WHERE name = {db:String}",
                parameters={"db": db},
            )
        )
        if not rows or not rows[0][0]:
            raise DependencyUnavailableError(
                f"the analytics store has no database {self.database!r}", dependency="analytics"
            )

    def _reset(self) -> None:
        if self._given is None:
            with self._lock:
                if self._store is not None:
                    self._store.close()
                self._store = None

    def close(self) -> None:
        if self._given is None and self._store is not None:
            self._store.close()
            self._store = None
