"""The key store as a `Projector`: wrapped data keys from `turnlog.keys` into PostgreSQL
(`projections.postgres.keystore`), with their offsets in the same transaction.

It consumes its own topic, and only keys: the read models never need a data key (sealed
fields stay sealed at rest; the API opens them when it reads). Tombstones of erased keys
are skipped (the erasure deleted the rows itself); a record that does not decode is
dead-lettered with stage `keys`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg

from turnlog.projections.postgres import statements
from turnlog.projections.postgres.keystore import store_records
from turnlog.streams.config import redact_url
from turnlog.streams.dlq import dead_letter_record
from turnlog.streams.errors import DependencyUnavailableError
from turnlog.streams.metrics import sample_freshness
from turnlog.streams.projector import Applied, DecodedBatch, Deliver


class KeysProjector:
    """See the module doc."""

    name = "keys"
    dead_letters_decode = True

    def __init__(self, *, dsn: str, schema: str, group: str, topic: str, dlq_topic: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.group = group
        self.topic: str | None = topic
        self.dlq_topic = dlq_topic
        self._where = f"PostgreSQL at {redact_url(dsn)}"
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog-keys")
        self._conn: psycopg.Connection[Any] | None = None

    async def _on_thread(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            try:
                conn = self._conn = psycopg.connect(self.dsn, autocommit=True)
            except psycopg.OperationalError as error:
                raise self._unavailable(error) from error
        return conn

    def _unavailable(self, error: BaseException) -> DependencyUnavailableError:
        return DependencyUnavailableError(f"{self._where}: {error}", dependency=self._where)

    async def start(self) -> None:
        await self._on_thread(self._connection)

    async def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return await self._on_thread(self._positions, partitions)  # type: ignore[no-any-return]

    def _positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        try:
            with self._connection().cursor() as cur:
                stored: dict[tuple[str, int], int] = {}
                for topic in sorted({t for t, _ in partitions}):
                    cur.execute(statements.load_offsets(self.schema), (self.group, topic))
                    stored.update({(topic, int(p)): int(o) for p, o in cur.fetchall()})
        except psycopg.OperationalError as error:
            self._conn = None
            raise self._unavailable(error) from error
        return {tp: stored[tp] for tp in partitions if tp in stored}

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Nothing is kept per partition."""

    async def apply(self, batch: DecodedBatch, deliver: Deliver) -> Applied:
        if batch.dead_letters:
            now = datetime.now(UTC)
            await deliver([dead_letter_record(d, topic=self.dlq_topic, at=now)
                           for d in batch.dead_letters])  # fmt: skip
        stored: int = await self._on_thread(self._apply, batch)
        return Applied(events=stored, dead_letters=list(batch.dead_letters),
                       freshness=sample_freshness([d.source for d in batch.events]))  # fmt: skip

    def _apply(self, batch: DecodedBatch) -> int:
        try:
            return store_records(
                self._connection(), schema=self.schema, consumer=self.group,
                records=[d.source for d in batch.events], offsets=batch.next_offsets(),
            )  # fmt: skip
        except psycopg.OperationalError as error:
            self._conn = None
            raise self._unavailable(error) from error

    async def stop(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()

        await self._on_thread(close)
        self._thread.shutdown(wait=False)
