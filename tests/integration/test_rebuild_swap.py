"""The online swap: a live processor keeps writing (PostgreSQL and ClickHouse) while the
rebuild catches up and swaps, and nothing is lost or duplicated.

The live processor is the worker's `BatchProcessor` with its shared projection lock, on
a connection whose INSERT statements psycopg has prepared (after 5 executions) before the
swap. It lags behind a backlog, so it has a batch waiting on the lock while the swap
commits, and goes on writing afterwards through the same prepared statements: PostgreSQL
re-resolves their schema-qualified table names after the rename, so those writes land in
the rebuilt schema. The final state equals a reference projected from the whole log in
one pass, which a lost batch (writes into the old schema) or a duplicated one (counters,
rollups) would break.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PgSchema, Topics
from tests.integration.test_rebuild_support import (
    PG_CONSUMER,
    LiveProcessor,
    Scratch,
    as_bodies,
    end_offsets,
    produce,
    session_copies,
)
from turnlog.projections.clickhouse.queries import checksum as clickhouse_checksum
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.postgres.checksum import checksum as postgres_checksum
from turnlog.streams.config import StreamsSettings
from turnlog.streams.rebuild import RebuildOptions, run_rebuild

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch(postgres_dsn: str, analytics_store: AnalyticsStore) -> Iterator[Scratch]:
    made = Scratch(postgres_dsn, analytics_store)
    yield made
    made.drop()


def offsets_of(dsn: str, schema: str, topic: str) -> dict[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT partition, next_offset FROM {} WHERE consumer = %s AND topic = %s")
            .format(sql.Identifier(schema, "consumer_offsets")), (PG_CONSUMER, topic),
        ).fetchall()  # fmt: skip
    return {int(p): int(o) for p, o in rows}


def test_the_swap_under_a_writing_live_processor_loses_and_duplicates_nothing(
    live_settings: StreamsSettings,
    topics: Topics, pg_schema: PgSchema, ch_database: str, analytics_store: AnalyticsStore,
    kafka_bootstrap: str, scratch: Scratch,
) -> None:  # fmt: skip
    settings = live_settings
    topic = settings.events_topic
    asyncio.run(produce(kafka_bootstrap, topic, as_bodies(session_copies(40))))
    live = LiveProcessor(settings, analytics_store, batch=20, pause=0.02).start()
    live.wait_for_batches(30)

    report = asyncio.run(run_rebuild(settings, RebuildOptions(batch_size=2000),
                                     store=analytics_store))  # fmt: skip
    names = report.names
    scratch.schemas.append(names.old_schema)
    scratch.databases.append(names.old_database)
    asyncio.run(produce(kafka_bootstrap, topic, as_bodies(session_copies(5, first=40))))
    ends = asyncio.run(end_offsets(kafka_bootstrap, topic))
    live.finish(ends)

    assert report.swapped
    assert report.swapped_at is not None
    assert_live_wrote_around_the_swap(live, report.swapped_at)
    # the old schema stopped at the swap; the live one (the rebuild) has everything
    old = offsets_of(pg_schema.dsn, names.old_schema, topic)
    assert sum(old.values()) < sum(ends.values())
    assert offsets_of(pg_schema.dsn, pg_schema.name, topic) == {p: o for p, o in ends.items() if o}
    reference = one_pass_projection(settings, analytics_store, scratch, ends)
    with psycopg.connect(pg_schema.dsn, autocommit=True) as conn:
        assert postgres_checksum(conn, pg_schema.name) == postgres_checksum(conn, reference[0])
        assert postgres_checksum(conn, names.old_schema) != postgres_checksum(conn, pg_schema.name)
    assert clickhouse_checksum(analytics_store, ch_database) == clickhouse_checksum(
        analytics_store, reference[1]
    )


def assert_live_wrote_around_the_swap(live: LiveProcessor, swapped_at: float) -> None:
    """Batches before the swap (prepared statements by then), one waiting on the lock
    while it committed, batches after it through the same prepared statements (their
    execution counts grew), which therefore wrote into the rebuilt schema."""
    before = [b for b in live.batches if b.ended < swapped_at]
    after = [b for b in live.batches if b.started > swapped_at]
    waiting = [b for b in live.batches if b.started < swapped_at < b.ended]
    assert len(before) >= 30, "the live processor wrote before the swap"
    assert after, "and after it"
    assert waiting, "a live batch waited on the lock while the swap committed"
    prepared = before[-1].prepared_inserts
    assert len(prepared) >= 5, "psycopg had prepared the live INSERTs before the swap"
    reused = [n for n, count in prepared.items() if after[-1].prepared_inserts[n] > count]
    assert len(reused) >= 5, "and executed those same statements after it"
    assert sum(b.records for b in after) > len(session_copies(5))


def one_pass_projection(
    settings: StreamsSettings, store: AnalyticsStore, scratch: Scratch, ends: dict[int, int]
) -> tuple[str, str]:
    """The whole log projected in large batches into a fresh schema and database."""
    schema, database = scratch.new()
    reference = settings.model_copy(
        update={"postgres_schema": schema, "clickhouse_database": database}
    )
    LiveProcessor(reference, store, batch=1000).start().finish(ends)
    return schema, database
