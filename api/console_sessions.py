"""Console sessions: a browser logs in once with an API key and then holds an opaque
cookie instead of the key.

The cookie value is 256 random bits; `console_sessions` keeps its SHA-256, the key id,
the session's CSRF token and its lifetime. A request with the cookie acts as the key
(same scopes, same per-key limit) while the session lives and the key is not revoked;
unsafe methods also need `X-CSRF-Token`, which a cross-site page cannot read or send.
Lookups are cached for `cache_ttl_s`, so a revocation ends a session within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from turnlog.api.keys import ApiKey

COOKIE_NAME: Final = "turnlog_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_CACHED: Final = 10_000


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A live session, as the API knows it (never the cookie value)."""

    key: ApiKey
    csrf_token: str
    expires_at: datetime


def _digest(cookie: str) -> bytes:
    return hashlib.sha256(b"turnlog-console-session:" + cookie.encode()).digest()


def cookie_header(value: str, *, max_age: int, secure: bool) -> str:
    """The `Set-Cookie` value of a session cookie (`max_age` 0 clears it)."""
    header = f"{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
    return header + "; Secure" if secure else header


def csrf_matches(session: ConsoleSession, presented: str | None) -> bool:
    return presented is not None and secrets.compare_digest(
        presented.encode(), session.csrf_token.encode()
    )


class ConsoleSessions:
    """Creates, finds and ends sessions in `console_sessions`; see the module doc.
    Thread-safe: the statements run in worker threads."""

    def __init__(self, *, schema: str, cache_ttl_s: float = 10.0) -> None:
        self._ttl = cache_ttl_s
        self._cache: dict[bytes, tuple[ConsoleSession | None, float]] = {}
        self._lock = threading.Lock()
        sessions, keys = (
            sql.Identifier(schema, "console_sessions"),
            sql.Identifier(schema, "api_keys"),
        )
        self._insert = sql.SQL(
            "INSERT INTO {} (session_hash, key_id, csrf_token, expires_at) VALUES (%s, %s, %s, %s)"
        ).format(sessions)
        self._purge = sql.SQL("DELETE FROM {} WHERE expires_at < now()").format(sessions)
        self._delete = sql.SQL("DELETE FROM {} WHERE session_hash = %s").format(sessions)
        self._select = sql.SQL(
            "SELECT k.key_id, k.name, k.scopes, k.created_at, s.csrf_token, s.expires_at "
            "FROM {} s JOIN {} k USING (key_id) "
            "WHERE s.session_hash = %s AND s.expires_at > now() AND k.revoked_at IS NULL"
        ).format(sessions, keys)

    def create(
        self, conn: psycopg.Connection[Any], key: ApiKey, *, ttl_s: int
    ) -> tuple[str, ConsoleSession]:
        """A new session of `key`: the cookie value (the only time it exists in clear)
        and the session. Expired sessions are deleted on the way."""
        cookie = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl_s)
        session = ConsoleSession(key, secrets.token_urlsafe(32), expires_at)
        with conn.transaction():
            conn.execute(self._purge)
            conn.execute(
                self._insert, (_digest(cookie), key.key_id, session.csrf_token, expires_at)
            )
        return cookie, session

    def cached(self, cookie: str) -> tuple[bool, ConsoleSession | None]:
        """(hit, session): whether the cache knows the answer, and the answer."""
        entry = self._cache.get(_digest(cookie))
        if entry is None or entry[1] < time.monotonic():
            return False, None
        session = entry[0]
        if session is not None and session.expires_at <= datetime.now(UTC):
            return True, None
        return True, session

    def lookup(self, conn: psycopg.Connection[Any], cookie: str) -> ConsoleSession | None:
        """The live session of `cookie`, or None (unknown, expired, or its key revoked)."""
        digest = _digest(cookie)
        row = conn.execute(self._select, (digest,)).fetchone()
        found = None
        if row is not None:
            key = ApiKey(row[0], row[1], frozenset(row[2]), row[3], None)
            found = ConsoleSession(key, row[4], row[5])
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (found, time.monotonic() + self._ttl)
        return found

    def end(self, conn: psycopg.Connection[Any], cookie: str) -> None:
        """Delete the session of `cookie` (logout)."""
        digest = _digest(cookie)
        conn.execute(self._delete, (digest,))
        with self._lock:
            self._cache.pop(digest, None)

    def forget(self) -> None:
        """Drop the cache (a revocation is then effective at once)."""
        with self._lock:
            self._cache.clear()
