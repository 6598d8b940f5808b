"""Fixtures of the integration tests beyond the shared ones in ``tests/conftest.py``."""

from __future__ import annotations

import pytest

from tests.conftest import PgSchema, Topics
from tests.integration.test_rebuild_support import settings_for
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.streams.config import StreamsSettings


@pytest.fixture
def live_settings(
    topics: Topics, pg_schema: PgSchema, ch_database: str, analytics_store: AnalyticsStore,
    kafka_bootstrap: str,
) -> StreamsSettings:  # fmt: skip
    """Streams settings on this test's own topics, PostgreSQL schema and ClickHouse database."""
    return settings_for(
        topics, schema=pg_schema.name, database=ch_database, store=analytics_store,
        bootstrap=kafka_bootstrap, dsn=pg_schema.dsn,
    )  # fmt: skip
