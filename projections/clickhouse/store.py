"""The analytics store: ClickHouse embedded (chDB) or a server, chosen by URL.

``chdb:///abs/path`` opens the embedded engine on a folder; ``http(s)://host:port``
talks to a server through clickhouse-connect. Both run the same DDL and queries.

A chDB folder can be opened by ONE process, and a process can open only one folder for
its lifetime. We hold an advisory lock file beside the data with the owner's pid and
command, so a second opener is told who has it instead of chDB's bare
"Error initializing EmbeddedServer".
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, Protocol
from urllib.parse import unquote, urlencode, urlsplit

from turnlog.projections.clickhouse.formats import (
    CHDB_OUTPUT_SETTINGS,
    INSERT_FORMAT,
    INSERT_SETTINGS,
    RESULT_FORMAT,
    ResultSet,
    decode_result,
    encode_rows,
)
from turnlog.projections.clickhouse.sql import (
    error_code,
    session_statements,
    setting_clause,
)

_LOCK_NAME = ".turnlog-owner.lock"


class AnalyticsStoreError(Exception):
    """Base of the analytics package's errors."""


class StoreLockedError(AnalyticsStoreError):
    """The chDB folder is open in another process."""


class QueryFailedError(AnalyticsStoreError):
    """ClickHouse refused or failed a statement; ``code`` is its error code when known
    (e.g. 62 syntax error, 159 timeout, 164 read-only)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


Parameters = Mapping[str, Any]
"""Values for ``{name:Type}`` placeholders, bound by ClickHouse itself."""
Settings = Mapping[str, Any]
"""ClickHouse settings for one statement, e.g. ``{"max_execution_time": 5}``."""


class AnalyticsStore(Protocol):
    """What the projection needs from ClickHouse; chDB and a server implement it alike."""

    url: str

    def command(self, sql: str, *, parameters: Parameters | None = None) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT)."""
        ...

    def query(
        self,
        sql: str,
        *,
        parameters: Parameters | None = None,
        settings: Settings | None = None,
        database: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""
        ...

    def select(
        self,
        sql: str,
        *,
        parameters: Parameters | None = None,
        settings: Settings | None = None,
        database: str | None = None,
    ) -> ResultSet:
        """Run a query and return its column names, types and rows. ``settings`` apply to
        this query only (``readonly`` included); ``database`` is its default database."""
        ...

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        *,
        column_names: Sequence[str],
        settings: Settings | None = None,
    ) -> None:
        """Insert ``rows`` (values in ``column_names`` order) into ``table`` (``db.table``,
        quoted) in one statement with ``settings``; both backends send the same
        ``formats.encode_rows`` payload."""
        ...

    def close(self) -> None: ...


class _Store:
    """What both backends share: ``query`` is ``select`` without the column names."""

    def select(
        self,
        sql: str,
        *,
        parameters: Parameters | None = None,
        settings: Settings | None = None,
        database: str | None = None,
    ) -> ResultSet:
        raise NotImplementedError

    def query(
        self,
        sql: str,
        *,
        parameters: Parameters | None = None,
        settings: Settings | None = None,
        database: str | None = None,
    ) -> list[tuple[Any, ...]]:
        return self.select(sql, parameters=parameters, settings=settings, database=database).rows


class ChdbStore(_Store):
    """The embedded engine on one folder, owned by this process until it exits.

    Statements that write (commands, inserts) share one connection under a lock; every
    ``select`` opens its own short-lived connection, so queries run beside the writer and
    their settings (``readonly``, limits) stay in their own session.
    """

    # chDB allows one folder per process for its lifetime; so does our owner lock.
    _opened: str | None = None
    _lock_fd: int | None = None

    def __init__(self, path: Path) -> None:
        import chdb

        self.url = f"chdb://{path}"
        self.path = path
        if ChdbStore._opened is None:
            path.mkdir(parents=True, exist_ok=True)
            ChdbStore._lock_fd = _acquire_owner_lock(path)
            ChdbStore._opened = str(path)
        elif ChdbStore._opened != str(path):
            raise AnalyticsStoreError(
                f"this process already opened chDB at {ChdbStore._opened}; chDB allows one "
                f"folder per process, so it cannot also open {path}"
            )
        self._connect_to = f"{path}?{urlencode(CHDB_OUTPUT_SETTINGS)}"
        self._write_lock = threading.Lock()
        try:
            self._conn = chdb.connect(self._connect_to)  # type: ignore[no-untyped-call]
        except RuntimeError as exc:
            raise AnalyticsStoreError(f"chDB could not open {path}: {exc}") from exc

    def command(self, sql: str, *, parameters: Parameters | None = None) -> None:
        with self._write_lock, _chdb_errors():
            self._conn.query(sql, "CSV", params=dict(parameters or {}))

    def select(
        self,
        sql: str,
        *,
        parameters: Parameters | None = None,
        settings: Settings | None = None,
        database: str | None = None,
    ) -> ResultSet:
        import chdb

        conn = chdb.connect(self._connect_to)  # type: ignore[no-untyped-call]
        try:
            with _chdb_errors():
                for statement in session_statements(settings or {}, database):
                    conn.query(statement, "CSV")
                result = conn.query(sql, RESULT_FORMAT, params=dict(parameters or {}))
            return decode_result(result.bytes().decode())
        finally:
            conn.close()

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        *,
        column_names: Sequence[str],
        settings: Settings | None = None,
    ) -> None:
        clause = setting_clause(INSERT_SETTINGS | dict(settings or {}))
        statement = f"INSERT INTO {table} ({', '.join(column_names)}) SETTINGS {clause}"
        body = encode_rows(rows)
        with (
            self._write_lock,
            _chdb_errors(),
            self._conn.send_insert(statement, INSERT_FORMAT) as inserter,
        ):
            inserter.append(body)
            inserter.finish()

    def close(self) -> None:
        # The engine stays initialized for the process's lifetime; the lock goes with it.
        pass

    @staticmethod
    def opened_in_this_process() -> bool:
        """Whether this process started the embedded engine (it cannot be stopped again:
        its threads live until the process ends, and may crash the interpreter's own
        teardown, so such a process ends with ``os._exit`` once its work is done)."""
        return ChdbStore._opened is not None


def exit_past_chdb_teardown(code: int) -> NoReturn:
    """End the process now with ``code``, logs and standard streams flushed, skipping the
    interpreter's teardown, where chDB's engine threads may crash it (SIGSEGV in
    "BgSchPool", "The ShutdownTablesThreadPool is not initialized")."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ServerStore(_Store):
    """A ClickHouse server through clickhouse-connect (HTTP interface).

    ``client`` takes an already built clickhouse-connect client instead (the tests drive
    this class through clickhouse-connect's in-process chDB client)."""

    def __init__(self, url: str, *, client: Any = None) -> None:
        import clickhouse_connect

        parts = urlsplit(url)
        self.url = f"{parts.scheme}://{parts.hostname}:{parts.port or 8123}"  # no secrets
        if client is not None:
            self._client = client
            return
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (8443 if parts.scheme == "https" else 8123),
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                secure=parts.scheme == "https",
                # no HTTP session: calls carry their own settings, and may run in parallel
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise AnalyticsStoreError(f"cannot reach ClickHouse at {self.url}: {exc}") from exc

    def command(self, sql: str, *, parameters: Parameters | None = None) -> None:
        with _server_errors():
            self._client.command(sql, parameters=dict(parameters or {}) or None)

    def select(
        self,
        sql: str,
        *,
        parameters: Parameters | None = None,
        settings: Settings | None = None,
        database: str | None = None,
    ) -> ResultSet:
        request_settings = dict(settings or {})
        if database is not None:
            request_settings["database"] = database  # an HTTP parameter of the request
        with _server_errors():
            result = self._client.query(
                sql, parameters=dict(parameters or {}) or None, settings=request_settings
            )
        return ResultSet(
            list(result.column_names),
            [t.name for t in result.column_types],
            [tuple(row) for row in result.result_rows],
        )

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        *,
        column_names: Sequence[str],
        settings: Settings | None = None,
    ) -> None:
        with _server_errors():
            self._client.raw_insert(
                table,
                column_names=list(column_names),
                insert_block=encode_rows(rows),
                settings=INSERT_SETTINGS | dict(settings or {}),
                fmt=INSERT_FORMAT,
            )

    def close(self) -> None:
        self._client.close()


def connect(url: str) -> AnalyticsStore:
    """Open the store the URL names: ``chdb:///path`` or ``http(s)://host:port``."""
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        if not path.startswith("/"):
            raise AnalyticsStoreError(f"chdb URL needs an absolute path (chdb:///abs/path): {url}")
        return ChdbStore(Path(path))
    if parts.scheme in ("http", "https"):
        return ServerStore(url)
    raise AnalyticsStoreError(
        f"unsupported ClickHouse URL scheme {parts.scheme!r}: use chdb:///path or http(s)://host:port"
    )


def chdb_owner(path: Path) -> int | None:
    """The pid of the process that holds the chDB folder open, or None when nobody does."""
    try:
        fd = os.open(path / _LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 64, 0).decode(errors="replace")
        match = re.match(r"pid (\d+)", text)
        return int(match.group(1)) if match else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _acquire_owner_lock(path: Path) -> int:
    fd = os.open(path / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreLockedError(
            f"the chDB folder {path} is open in another process ({owner}); one process owns "
            "it at a time: stop that process, or query through it (the analysts' command)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode(), 0)
    return fd  # held open for the process's lifetime, like the engine


@contextmanager
def _chdb_errors() -> Iterator[None]:
    import chdb

    try:
        yield
    except (RuntimeError, chdb.ChdbError) as exc:
        message = str(exc)
        raise QueryFailedError(message, code=error_code(message)) from exc


@contextmanager
def _server_errors() -> Iterator[None]:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        yield
    except ClickHouseError as exc:
        message = str(exc)
        raise QueryFailedError(message, code=error_code(message)) from exc
