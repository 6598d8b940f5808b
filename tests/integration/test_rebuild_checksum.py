"""`python -m turnlog.streams checksum`: two projections of the same log compare equal; a
deliberately altered row makes it exit 1 and name the table."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from psycopg import sql

from tests.conftest import PgSchema, Topics
from tests.integration.test_rebuild_support import (
    LiveProcessor,
    Scratch,
    as_bodies,
    end_offsets,
    produce,
    session_copies,
    settings_for,
)
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.streams.checksum import main
from turnlog.streams.config import StreamsSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def two_projections(
    live_settings: StreamsSettings,
    topics: Topics, pg_schema: PgSchema, ch_database: str, analytics_store: AnalyticsStore,
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, str, str, str]]:  # fmt: skip
    """The same log projected twice, in batches of different sizes."""
    scratch = Scratch(pg_schema.dsn, analytics_store)
    other_schema, other_database = scratch.new()
    first = live_settings
    second = settings_for(
        topics,
        schema=other_schema,
        database=other_database,
        store=analytics_store,
        bootstrap=kafka_bootstrap,
        dsn=pg_schema.dsn,
    )
    asyncio.run(produce(kafka_bootstrap, first.events_topic, as_bodies(session_copies(3))))
    ends = asyncio.run(end_offsets(kafka_bootstrap, first.events_topic))
    LiveProcessor(first, analytics_store, batch=17).start().finish(ends)
    LiveProcessor(second, analytics_store, batch=500).start().finish(ends)
    monkeypatch.setenv("TURNLOG_POSTGRES_DSN", pg_schema.dsn)
    monkeypatch.setenv("TURNLOG_CLICKHOUSE_URL", analytics_store.url)
    yield pg_schema.name, other_schema, ch_database, other_database
    scratch.drop()


def arguments(schemas: tuple[str, str, str, str]) -> list[str]:
    a, b, x, y = schemas
    return ["--pg-schema", a, "--pg-schema", b, "--ch-database", x, "--ch-database", y]


def test_equal_projections_exit_0(
    two_projections: tuple[str, str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments(two_projections)) == 0
    out = capsys.readouterr().out
    for table in ("sessions", "messages", "transcriptions", "turn_states", "latency_1m"):
        assert table in out
    assert "DIFFERS" not in out


def test_an_altered_postgres_row_exits_1_naming_the_table(
    two_projections: tuple[str, str, str, str], capsys: pytest.CaptureFixture[str],
    pg_schema: PgSchema,
) -> None:  # fmt: skip
    with pg_schema.connect() as conn:
        conn.execute(sql.SQL("UPDATE {} SET text = text || '!' WHERE sequence = ("
                             "SELECT min(sequence) FROM {})").format(
            sql.Identifier(two_projections[1], "messages"),
            sql.Identifier(two_projections[1], "messages")))  # fmt: skip

    assert main(arguments(two_projections)) == 1

    captured = capsys.readouterr()
    assert "differ: postgres messages" in captured.err
    assert captured.out.count("DIFFERS") == 1


def test_an_altered_clickhouse_row_exits_1_naming_the_table(
    two_projections: tuple[str, str, str, str], capsys: pytest.CaptureFixture[str],
    analytics_store: AnalyticsStore,
) -> None:  # fmt: skip
    other = two_projections[3]
    analytics_store.command(
        f"ALTER TABLE `{other}`.errors UPDATE message = 'altered' WHERE 1 "
        "SETTINGS mutations_sync = 2"
    )

    assert main(["--ch-database", two_projections[2], "--ch-database", other]) == 1

    assert "differ: clickhouse errors" in capsys.readouterr().err


def test_a_missing_schema_exits_3_and_a_lone_option_exits_2(
    two_projections: tuple[str, str, str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["--pg-schema", two_projections[0], "--pg-schema", "no_such_schema"]) == 3
    assert "no_such_schema" in capsys.readouterr().err
    assert main(["--pg-schema", two_projections[0]]) == 2
    assert "--pg-schema" in capsys.readouterr().err
