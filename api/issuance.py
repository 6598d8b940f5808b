"""The record of issued tokens: who (API key, client address), which room and identity,
when, until when; never the token. Written to `token_issuances` in batches.

Issuing a token must not wait for a database write, so `IssuanceLog.record` appends to a
bounded in-memory buffer and a background task writes the buffer every `interval_s` in
one COPY. When PostgreSQL is unreachable the buffer is kept and retried; when it is full
the API refuses new tokens (503) rather than issue one it cannot record. What is buffered
at shutdown is written before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

logger = logging.getLogger(__name__)

_COLUMNS: Final = ("issued_at", "key_id", "client_address", "room", "identity", "expires_at",
                   "agent_name")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Issuance:
    issued_at: datetime
    key_id: str
    client_address: str | None
    room: str
    identity: str
    expires_at: datetime
    agent_name: str | None


_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str | None) -> str:
    return "\\N" if value is None else value.translate(_ESCAPES)


def _copy_line(i: Issuance) -> str:
    """One row in COPY's text format (tab-separated, `\\N` for null, escaped)."""
    return (
        f"{i.issued_at.isoformat()}\t{_text(i.key_id)}\t{_text(i.client_address)}\t"
        f"{_text(i.room)}\t{_text(i.identity)}\t{i.expires_at.isoformat()}\t"
        f"{_text(i.agent_name)}\n"
    )


class IssuanceLog:
    """Buffers issuances and writes them in batches; see the module doc."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        schema: str,
        interval_s: float = 0.05,
        max_pending: int = 100_000,
    ) -> None:
        self._pool = pool
        self._interval = interval_s
        self._max_pending = max_pending
        self._pending: list[str] = []
        """COPY lines, formatted when recorded: the writer thread then only sends bytes
        (it would otherwise hold the GIL for the formatting, and stall the event loop
        up to a switch interval)."""
        self._copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(schema, "token_issuances"),
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.failing = False
        """Whether the last write failed (reported by readiness)."""

    def has_room(self) -> bool:
        return len(self._pending) < self._max_pending

    def record(self, issuance: Issuance) -> None:
        self._pending.append(_copy_line(issuance))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="issuance-log")

    async def stop(self) -> None:
        """Stop the writer and write what is left (once; logged when it fails).

        The writer is asked to stop, not cancelled: a cancel landing while a batch is in
        the writer thread would drop the batch from the buffer while the thread's write
        races the pool's closing (seen as a run that lost the last issuances)."""
        if self._task is not None:
            self._stopping.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    async def flush(self) -> bool:
        """Write what is buffered now; False (and kept for later) when it fails."""
        if not self._pending:
            return True
        batch, self._pending = self._pending, []
        try:
            await run_in_threadpool(self._write, "".join(batch).encode())
        except (psycopg.Error, OSError) as error:
            self._pending[:0] = batch
            if not self.failing:
                logger.error("cannot record %d token issuances: %s", len(batch), error)
            self.failing = True
            return False
        if self.failing:
            logger.info("token issuances recorded again")
        self.failing = False
        return True

    def _write(self, data: bytes) -> None:
        # One block of COPY text: psycopg's write_row costs ~25 us a row, holding the GIL.
        with self._pool.connection() as conn, conn.cursor() as cur, cur.copy(self._copy) as copy:
            copy.write(data)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            await self.flush()
