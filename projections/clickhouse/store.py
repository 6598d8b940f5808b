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
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

_LOCK_NAME = ".turnlog-owner.lock"


class AnalyticsStoreError(Exception):
    """Base of the analytics store's errors."""


class StoreLockedError(AnalyticsStoreError):
    """The chDB folder is open in another process."""


class AnalyticsStore(Protocol):
    url: str

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT)."""
        ...

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""
        ...

    def close(self) -> None: ...


class ChdbStore:
    """The embedded engine on one folder, owned by this process until it exits."""

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
        try:
            self._conn = chdb.connect(str(path))  # type: ignore[no-untyped-call]
        except RuntimeError as exc:
            raise AnalyticsStoreError(f"chDB could not open {path}: {exc}") from exc

    def command(self, sql: str) -> None:
        self._run(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self._run(sql))

    def _run(self, sql: str) -> Sequence[tuple[Any, ...]]:
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql)
            return cursor.fetchall() or []
        except RuntimeError as exc:
            raise AnalyticsStoreError(str(exc)) from exc
        finally:
            cursor.close()

    def close(self) -> None:
        # The engine stays initialized for the process's lifetime; the lock goes with it.
        pass


class ServerStore:
    """A ClickHouse server through clickhouse-connect (HTTP interface)."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        parts = urlsplit(url)
        self.url = f"{parts.scheme}://{parts.hostname}:{parts.port or 8123}"  # no secrets
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (8443 if parts.scheme == "https" else 8123),
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                secure=parts.scheme == "https",
            )
        except Exception as exc:
            raise AnalyticsStoreError(f"cannot reach ClickHouse at {self.url}: {exc}") from exc

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._client.query(sql).result_rows]

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
