"""A rebuild from offset 0 gives the state live processing gave, in PostgreSQL and
ClickHouse: recorded sessions (and bad records) in Kafka, projected "live" by the
worker's processor in small batches, then rebuilt in large ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import PgSchema, Topics
from tests.integration.test_rebuild_support import (
    LiveProcessor,
    Scratch,
    as_bodies,
    database_exists,
    end_offsets,
    produce,
    schema_exists,
    session_copies,
)
from tests.unit.test_streams_support import BAD_KINDS, mixed_bodies
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.streams.checksum import differing
from turnlog.streams.config import StreamsSettings
from turnlog.streams.rebuild import RebuildOptions, RebuildRefusedError, Target, run_rebuild
from turnlog.streams.rebuild.plan import Names

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch(postgres_dsn: str, analytics_store: AnalyticsStore) -> Iterator[Scratch]:
    made = Scratch(postgres_dsn, analytics_store)
    yield made
    made.drop()


def names_of(report_names: Names, scratch: Scratch) -> None:
    """Let the scratch fixture drop whatever the rebuild kept."""
    scratch.schemas.extend([report_names.old_schema, report_names.rebuilt_schema])
    scratch.databases.extend([report_names.old_database, report_names.rebuilt_database])


def test_a_dry_run_finds_the_rebuild_equal_to_live_and_sends_nothing(
    live_settings: StreamsSettings,
    topics: Topics, pg_schema: PgSchema, ch_database: str, analytics_store: AnalyticsStore,
    kafka_bootstrap: str, scratch: Scratch,
) -> None:  # fmt: skip
    settings = live_settings
    events_topic = settings.events_topic
    asyncio.run(produce(kafka_bootstrap, events_topic, mixed_bodies(session_copies(12))))
    ends = asyncio.run(end_offsets(kafka_bootstrap, events_topic))
    LiveProcessor(settings, analytics_store, batch=37).start().finish(ends)

    options = RebuildOptions(dry_run=True, batch_size=500)
    report = asyncio.run(run_rebuild(settings, options, store=analytics_store))
    names_of(report.names, scratch)

    assert {d.sink for d in report.comparison} == {"postgres", "clickhouse"}
    assert differing(report.comparison) == []
    assert report.replayed == sum(ends.values())
    assert report.dead_letters == len(BAD_KINDS)
    assert not report.swapped
    assert not schema_exists(pg_schema.dsn, report.names.rebuilt_schema)
    assert not database_exists(analytics_store, report.names.rebuilt_database)
    for topic in (settings.dlq_topic, settings.turns_topic, settings.sessions_topic):
        assert sum(asyncio.run(end_offsets(kafka_bootstrap, topic)).values()) == 0


def test_a_rebuild_stops_where_live_processing_is(
    live_settings: StreamsSettings,
    topics: Topics, pg_schema: PgSchema, ch_database: str, analytics_store: AnalyticsStore,
    kafka_bootstrap: str, scratch: Scratch,
) -> None:  # fmt: skip
    """The worker is behind the log (stopped): the rebuild reads only what live processing
    applied, so the ClickHouse writer never finds records it skips written twice."""
    settings = live_settings
    first = as_bodies(session_copies(6))
    asyncio.run(produce(kafka_bootstrap, settings.events_topic, first))
    applied = asyncio.run(end_offsets(kafka_bootstrap, settings.events_topic))
    LiveProcessor(settings, analytics_store, batch=64).start().finish(applied)
    later = as_bodies(session_copies(6, first=6))
    asyncio.run(produce(kafka_bootstrap, settings.events_topic, later))

    options = RebuildOptions(dry_run=True, batch_size=1000)
    report = asyncio.run(run_rebuild(settings, options, store=analytics_store))
    names_of(report.names, scratch)

    assert report.replayed == len(first)
    assert differing(report.comparison) == []


@pytest.mark.parametrize("target", [Target.POSTGRES, Target.CLICKHOUSE])
def test_one_projection_alone_is_rebuilt_and_swapped(
    live_settings: StreamsSettings,
    target: Target, topics: Topics, pg_schema: PgSchema, ch_database: str,
    analytics_store: AnalyticsStore, kafka_bootstrap: str, scratch: Scratch,
) -> None:  # fmt: skip
    settings = live_settings
    asyncio.run(produce(kafka_bootstrap, settings.events_topic, as_bodies(session_copies(4))))
    ends = asyncio.run(end_offsets(kafka_bootstrap, settings.events_topic))
    LiveProcessor(settings, analytics_store, batch=25).start().finish(ends)

    options = RebuildOptions(target=target, keep_old=False)
    report = asyncio.run(run_rebuild(settings, options, store=analytics_store))
    names_of(report.names, scratch)

    assert report.swapped
    assert report.kept == []
    names = report.names
    assert not schema_exists(pg_schema.dsn, names.rebuilt_schema)  # scratch, or swapped in
    assert not schema_exists(pg_schema.dsn, names.old_schema)
    assert not database_exists(analytics_store, names.rebuilt_database)
    assert not database_exists(analytics_store, names.old_database)
    assert schema_exists(pg_schema.dsn, pg_schema.name)
    assert database_exists(analytics_store, ch_database)


def test_a_rebuild_with_another_consumer_group_is_refused_before_creating_anything(
    live_settings: StreamsSettings,
    topics: Topics, pg_schema: PgSchema, ch_database: str, analytics_store: AnalyticsStore,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    """Live offsets under another name mean wrong settings: swapping in an empty rebuild
    would wipe the read models."""
    settings = live_settings
    asyncio.run(produce(kafka_bootstrap, settings.events_topic, as_bodies(session_copies(1))))
    ends = asyncio.run(end_offsets(kafka_bootstrap, settings.events_topic))
    LiveProcessor(settings, analytics_store).start().finish(ends)
    wrong = settings.model_copy(update={"consumer_group": "someone-else"})

    with pytest.raises(RebuildRefusedError, match="TURNLOG_STREAMS_CONSUMER_GROUP") as refused:
        asyncio.run(run_rebuild(wrong, RebuildOptions(stamp="20250301120000"),
                                store=analytics_store))  # fmt: skip

    assert refused.value.exit_code == 3
    assert not schema_exists(pg_schema.dsn, f"{pg_schema.name}_rebuild_20250301120000")
