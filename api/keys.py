"""API keys: made once and shown once, kept as their SHA-256 in PostgreSQL, with scopes.

A key is `tlk_` and 43 URL-safe characters (256 random bits). Scopes: `tokens` (clients'
backends issue LiveKit tokens), `read` (read models and analytics), `admin` (rooms and
analysts' SQL). `KeyRing` checks a presented key against the table with a short cache,
so the token route does not pay a database round trip per request; a revoked key stops
working within `cache_ttl_s`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

import psycopg
from psycopg import sql

from turnlog.api.errors import InvalidRequestError
from turnlog.projections.postgres.migrate import migrate_postgres

Scope = Literal["tokens", "read", "admin"]
SCOPES: Final[tuple[str, ...]] = get_args(Scope)
KEY_PREFIX: Final = "tlk_"
_MAX_CACHED: Final = 10_000


class InvalidKeySpecError(InvalidRequestError):
    """A key name or scope list that cannot be stored."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, as the API knows it (never the key itself)."""

    key_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_scopes(scopes: Sequence[str]) -> list[str]:
    """The scopes, deduplicated in canonical order; `InvalidKeySpecError` for an unknown one."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidKeySpecError(
            f"scopes must be a non-empty subset of {list(SCOPES)}, got {list(scopes)}"
        )
    return [s for s in SCOPES if s in scopes]


def insert_key(
    conn: psycopg.Connection[Any], *, name: str, scopes: Sequence[str], schema: str
) -> tuple[str, ApiKey]:
    """Store a new key on `conn`; return it (the only time it exists in clear) and its row."""
    if not name.strip() or len(name) > 200:
        raise InvalidKeySpecError("name must be 1 to 200 characters")
    canonical = check_scopes(scopes)
    key = new_key()
    key_id = uuid.uuid4().hex[:16]
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (key_id, name, key_hash, scopes) VALUES (%s, %s, %s, %s) "
            "RETURNING created_at"
        ).format(sql.Identifier(schema, "api_keys")),
        (key_id, name, hash_key(key), canonical),
    ).fetchone()
    if row is None:  # pragma: no cover - RETURNING always yields the row
        raise RuntimeError("the key was not stored")
    return key, ApiKey(key_id, name, frozenset(canonical), row[0])


def create_key(dsn: str, *, name: str, scopes: Sequence[str], schema: str = "public") -> str:
    """Make a key with `scopes` named `name` in the database at `dsn`; return it. It is
    stored hashed: this is the only time it can be read. Applies pending migrations of
    `schema` first (idempotent), so a fresh database works."""
    migrate_postgres(dsn, schema=schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        key, _ = insert_key(conn, name=name, scopes=scopes, schema=schema)
    return key


def revoke_key(dsn: str, key_id: str, *, schema: str = "public") -> bool:
    """Revoke a key by id; False when no such active key exists."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            sql.SQL(
                "UPDATE {} SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL"
            ).format(sql.Identifier(schema, "api_keys")),
            (key_id,),
        )
        return cur.rowcount == 1


def list_keys(dsn: str, *, schema: str = "public") -> list[ApiKey]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT key_id, name, scopes, created_at, revoked_at FROM {} ORDER BY created_at"
            ).format(sql.Identifier(schema, "api_keys"))
        ).fetchall()
    return [ApiKey(r[0], r[1], frozenset(r[2]), r[3], r[4]) for r in rows]


class KeyRing:
    """Looks presented keys up in `api_keys`, caching answers (known or not) for
    `cache_ttl_s` seconds. Thread-safe: lookups run in worker threads."""

    def __init__(self, *, schema: str, cache_ttl_s: float = 30.0) -> None:
        self._ttl = cache_ttl_s
        self._cache: dict[bytes, tuple[ApiKey | None, float]] = {}
        self._lock = threading.Lock()
        self._query = (
            sql.SQL(
                "SELECT key_id, name, scopes, created_at, revoked_at FROM {} WHERE key_hash = %s"
            )
            .format(sql.Identifier(schema, "api_keys"))
            .as_bytes()
        )

    def cached(self, key: str) -> tuple[bool, ApiKey | None]:
        """(hit, key): whether the cache knows the answer, and the answer."""
        entry = self._cache.get(hash_key(key))
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def lookup(self, conn: psycopg.Connection[Any], key: str) -> ApiKey | None:
        """The active key, or None for an unknown or revoked one (blocking: a thread)."""
        digest = hash_key(key)
        row = conn.execute(self._query, (digest,)).fetchone()
        found = None
        if row is not None and row[4] is None:
            found = ApiKey(row[0], row[1], frozenset(row[2]), row[3], None)
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()  # bounded: unknown keys must not grow it forever
            self._cache[digest] = (found, time.monotonic() + self._ttl)
        return found

    def forget(self) -> None:
        """Drop the cache (after a revocation, to make it effective at once)."""
        with self._lock:
            self._cache.clear()
