"""The PostgreSQL advisory lock that keeps a schema swap away from batches in flight.

Every batch the worker applies holds `pg_advisory_lock_shared(PROJECTION_LOCK_KEY)` on a
session of its own from before the batch's transaction until its derived records are read
back. An online rebuild (`streams rebuild`) takes `pg_advisory_lock(PROJECTION_LOCK_KEY)`
(exclusive) to swap the rebuilt schema in: it waits for the batch in flight, and batches
wait for the swap. Session-level locks: a worker that dies releases its lock with its
connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg

PROJECTION_LOCK_KEY: Final = 0x746C2D70726F6A  # "tl-proj"; one key per database
"""Advisory lock key of the read models' writers (shared) and schema swaps (exclusive).
Distinct from the migrator's key (`projections.postgres.migrate._LOCK_KEY`)."""


@contextmanager
def shared_projection_lock(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Hold the shared lock on `conn` (an autocommit connection) for the block."""
    conn.execute("SELECT pg_advisory_lock_shared(%s)", (PROJECTION_LOCK_KEY,))
    try:
        yield
    finally:
        if not (conn.closed or conn.broken):  # a lost session released its locks
            conn.execute("SELECT pg_advisory_unlock_shared(%s)", (PROJECTION_LOCK_KEY,))


@contextmanager
def exclusive_projection_lock(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Hold the exclusive lock on `conn`: no batch is in flight during the block."""
    conn.execute("SELECT pg_advisory_lock(%s)", (PROJECTION_LOCK_KEY,))
    try:
        yield
    finally:
        if not (conn.closed or conn.broken):
            conn.execute("SELECT pg_advisory_unlock(%s)", (PROJECTION_LOCK_KEY,))
