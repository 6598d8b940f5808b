"""The analysts' way into an embedded chDB folder: its owner serves queries on loopback.

Only the process that owns a chDB folder can open it. That process (the streams worker)
runs a ``QueryEndpoint``: ``make_query_app`` served by uvicorn in a background thread on
127.0.0.1, announced in ``.turnlog-query-endpoint.json`` beside the owner lock (mode 0600,
with a bearer token made for the run). ``python -m turnlog.projections.clickhouse query`` reads
that file when the folder is locked, and sends the query there.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import unquote, urlsplit

from turnlog.projections.clickhouse.analyst import (
    AnalystQueryError,
    QueryResult,
    ReadOnlyViolationError,
    error_from_name,
    make_query_app,
)
from turnlog.projections.clickhouse.formats import ResultSet, converter
from turnlog.projections.clickhouse.store import (
    AnalyticsStore,
    AnalyticsStoreError,
    ChdbStore,
    Parameters,
    Settings,
    StoreLockedError,
    chdb_owner,
    connect,
)

logger = logging.getLogger(__name__)

ENDPOINT_FILE: Final = ".turnlog-query-endpoint.json"


class EndpointUnavailableError(AnalyticsStoreError):
    """No query endpoint answers for the store (none published, or it is gone)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a store's owner serves queries."""

    url: str
    token: str | None
    pid: int


class QueryEndpoint:
    """Serves ``make_query_app(store)`` on loopback until ``stop``; a context manager.

    With a ``ChdbStore`` the endpoint is published in its folder (``publish=True``), with a
    fresh token unless one is given."""

    def __init__(
        self,
        store: AnalyticsStore,
        *,
        token: str | None = None,
        database: str | None = None,
        port: int = 0,
        publish: bool = True,
    ) -> None:
        self._folder = store.path if publish and isinstance(store, ChdbStore) else None
        self.token = token if token or self._folder is None else secrets.token_hex(24)
        self._app = make_query_app(store, token=self.token, database=database)
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.endpoint: Endpoint | None = None

    def start(self) -> Endpoint:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        config = uvicorn.Config(
            self._app, log_level="warning", lifespan="off", ws="none", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="query-endpoint", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise EndpointUnavailableError("the query endpoint did not start")
            time.sleep(0.01)
        port = sock.getsockname()[1]
        self.endpoint = Endpoint(f"http://127.0.0.1:{port}", self.token, os.getpid())
        if self._folder is not None:
            _publish(self._folder, self.endpoint)
        logger.info("serving analyst queries at %s", self.endpoint.url)
        return self.endpoint

    def stop(self) -> None:
        if self._folder is not None:
            (self._folder / ENDPOINT_FILE).unlink(missing_ok=True)
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()


def _publish(folder: Path, endpoint: Endpoint) -> None:
    path = folder / ENDPOINT_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(endpoint), file)
    temporary.replace(path)


def published_endpoint(folder: Path) -> Endpoint:
    """The endpoint the owner of chDB ``folder`` serves; ``EndpointUnavailableError``
    when nobody owns it or the owner published none."""
    owner = chdb_owner(folder)
    try:
        raw = json.loads((folder / ENDPOINT_FILE).read_text())
        endpoint = Endpoint(str(raw["url"]), raw.get("token"), int(raw["pid"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EndpointUnavailableError(
            f"the chDB folder {folder} is owned by pid {owner}, which publishes no query "
            f"endpoint ({folder / ENDPOINT_FILE}: {exc})"
        ) from exc
    if owner != endpoint.pid:
        raise EndpointUnavailableError(
            f"the query endpoint in {folder} belongs to pid {endpoint.pid}, which no longer "
            f"owns the folder (owner: {owner})"
        )
    return endpoint


def query_endpoint(
    url: str,
    sql: str,
    *,
    token: str | None = None,
    timeout_s: float = 10,
    max_rows: int = 10_000,
    database: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> QueryResult:
    """Run ``sql`` through a query endpoint; values come back typed as a store returns
    them. Raises the endpoint's typed ``AnalystQueryError``, or
    ``EndpointUnavailableError`` when it cannot be reached."""
    body = {
        "sql": sql, "timeout_s": timeout_s, "max_rows": max_rows, "database": database,
        "parameters": dict(parameters) if parameters else None,
    }  # fmt: skip
    request = urllib.request.Request(  # noqa: S310 (http to a URL the caller chose)
        url.rstrip("/") + "/query",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s + 30) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise _endpoint_error(exc) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise EndpointUnavailableError(f"the query endpoint {url} does not answer: {exc}") from exc
    types: list[str] = answer["types"]
    converters = [converter(t) for t in types]
    rows = [
        tuple(c(v) if v is not None else None for c, v in zip(converters, row, strict=True))
        for row in answer["rows"]
    ]
    return QueryResult(answer["columns"], rows, answer["truncated"], answer["elapsed_s"], types)


def _endpoint_error(exc: urllib.error.HTTPError) -> AnalyticsStoreError:
    try:
        detail = json.loads(exc.read())
    except ValueError:
        detail = {}
    if exc.code == 401:
        return EndpointUnavailableError(f"the query endpoint refused the token: {detail}")
    if "error" not in detail:
        return AnalystQueryError(f"the query endpoint answered {exc.code}: {detail}")
    return error_from_name(detail["error"], detail.get("message", ""), detail.get("code"))


class EndpointStore:
    """An ``AnalyticsStore`` that reads through a query endpoint: how another process (the
    API beside the streams worker) reads a chDB folder it cannot open. Read-only: the
    endpoint applies its own guards, so ``settings`` are not forwarded."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float = 30, max_rows: int = 1_000_000):
        self.url = endpoint.url
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._max_rows = max_rows

    def command(self, sql: str, *, parameters: Parameters | None = None) -> None:
        raise ReadOnlyViolationError(f"{self.url} is a read-only query endpoint")

    def query(
        self, sql: str, *, parameters: Parameters | None = None,
        settings: Settings | None = None, database: str | None = None,
    ) -> list[tuple[Any, ...]]:  # fmt: skip
        return self.select(sql, parameters=parameters, settings=settings, database=database).rows

    def select(
        self, sql: str, *, parameters: Parameters | None = None,
        settings: Settings | None = None, database: str | None = None,
    ) -> ResultSet:  # fmt: skip
        result = query_endpoint(
            self.url, sql, token=self._endpoint.token, timeout_s=self._timeout_s,
            max_rows=self._max_rows, database=database, parameters=parameters,
        )  # fmt: skip
        if result.truncated:
            raise AnalyticsStoreError(f"the result has more than {self._max_rows} rows")
        return ResultSet(result.columns, result.types, result.rows)

    def insert(
        self, table: str, rows: Sequence[Sequence[Any]], *, column_names: Sequence[str],
        settings: Settings | None = None,
    ) -> None:  # fmt: skip
        raise ReadOnlyViolationError(f"{self.url} is a read-only query endpoint")

    def close(self) -> None:
        pass


def open_reader(url: str, *, may_open_chdb: bool = False) -> AnalyticsStore:
    """A store to read analytics from. A server URL: the server. A chDB folder: an
    ``EndpointStore`` on the endpoint its owner publishes, since opening the folder would
    make this process its owner and lock the streams worker out; a short-lived command
    may pass ``may_open_chdb`` to open it itself when nobody owns it."""
    if not url.startswith("chdb:"):
        return connect(url)
    folder = chdb_folder(url)
    if may_open_chdb and chdb_owner(folder) is None:
        try:
            return connect(url)
        except StoreLockedError:
            pass  # taken meanwhile: read through the new owner
    return EndpointStore(published_endpoint(folder))


def chdb_folder(url: str) -> Path:
    """The folder a ``chdb:///path`` URL names."""
    parts = urlsplit(url)
    return Path(unquote(parts.netloc + parts.path))
