"""A batch of the log into a PostgreSQL schema and (optionally) a ClickHouse database, on
one thread: what a rebuild replays with. The same decode, isolation and sinks as the live
projections (`decoding`, `isolate`, `sinks`), without their Kafka plumbing; no derived
records (their topics have them). `lock`: a connection to hold the shared projection
lock on for each batch (a live writer beside an online swap; a rebuild's own target
needs none)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import psycopg

from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.streams.decoding import decode_records
from turnlog.streams.isolate import RetryPolicy, apply_isolating
from turnlog.streams.locks import shared_projection_lock
from turnlog.streams.records import DeadLetter, RawRecord
from turnlog.streams.sinks import clickhouse_sink, letter_for, postgres_sink


@dataclass(slots=True)
class Replayed:
    """What one `process` call did."""

    consumed: int = 0
    applied: int = 0
    """Events new to PostgreSQL."""
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)


class ReplayProcessor:
    """See the module doc."""

    def __init__(
        self, postgres: PostgresProjection, clickhouse: ClickHouseProjection | None, *,
        lock: psycopg.Connection[Any] | None = None, retry: RetryPolicy = RetryPolicy(),  # noqa: B008
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        self.postgres = postgres
        self.clickhouse = clickhouse
        self.lock = lock
        self.retry = retry
        self.sleep = sleep

    def process(self, records: Sequence[RawRecord]) -> Replayed:
        batch = decode_records(records)
        outcome = Replayed(consumed=len(batch), dead_letters=list(batch.dead_letters))
        raw_of = {id(d.source): d.raw for d in batch.events}
        sources = [d.source for d in batch.events]
        held = shared_projection_lock(self.lock) if self.lock is not None else nullcontext()
        with held:
            pg = apply_isolating(postgres_sink(self.postgres.apply_batch), sources,
                                 policy=self.retry, sleep=self.sleep)  # fmt: skip
        outcome.applied = sum(r.applied for r in pg.results)
        outcome.duplicates = sum(r.skipped_duplicates for r in pg.results)
        refused = {id(s) for s, _ in pg.rejected}
        outcome.dead_letters += [letter_for(raw_of[id(s)], e, "postgres") for s, e in pg.rejected]
        if self.clickhouse is not None:
            kept = [s for s in sources if id(s) not in refused]
            ch = apply_isolating(clickhouse_sink(self.clickhouse.write_batch), kept,
                                 policy=self.retry, sleep=self.sleep)  # fmt: skip
            outcome.dead_letters += [
                letter_for(raw_of[id(s)], e, "clickhouse") for s, e in ch.rejected
            ]
        return outcome

    def close(self) -> None:
        self.postgres.close()
