"""Analysts' read-only SQL: guards enforced by ClickHouse, the example queries of the
README, and the loopback endpoint the owner of a chDB folder serves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.unit.test_ch_sessions import as_records, minute_start, recorded_events
from turnlog.projections.clickhouse import queries
from turnlog.projections.clickhouse.analyst import (
    ANALYST_QUERIES_FILE,
    AnalystQueryError,
    QuerySyntaxError,
    QueryTimeoutError,
    ReadOnlyViolationError,
    analyst_queries,
    run_readonly_query,
)
from turnlog.projections.clickhouse.query_endpoint import (
    ENDPOINT_FILE,
    EndpointStore,
    EndpointUnavailableError,
    QueryEndpoint,
    query_endpoint,
)
from turnlog.projections.clickhouse.store import AnalyticsStore, ChdbStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection

pytestmark = pytest.mark.integration

README = Path(ANALYST_QUERIES_FILE).resolve().parents[2] / "README.md"  # the repository README


@pytest.fixture
def sessions_db(analytics_store: AnalyticsStore, ch_database: str) -> str:
    """The recorded sessions, two minutes ago."""
    projection = ClickHouseProjection(analytics_store, database=ch_database)
    projection.write_batch(as_records(recorded_events(minute_start())))
    return ch_database


@pytest.fixture
def endpoint(analytics_store: AnalyticsStore, sessions_db: str) -> Iterator[QueryEndpoint]:
    with QueryEndpoint(analytics_store, database=sessions_db) as served:
        yield served


# -- guards -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO events (session_id, sequence) VALUES ('x', 1)",
        "DROP TABLE events",
        "CREATE TABLE stolen (x UInt8) ENGINE = Memory",
        "ALTER TABLE events DELETE WHERE 1",
        "TRUNCATE TABLE turn_facts",
        "SELECT count() FROM events SETTINGS max_execution_time = 0",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    ],
)
def test_clickhouse_refuses_anything_but_reading(
    analytics_store: AnalyticsStore, sessions_db: str, sql: str
) -> None:
    with pytest.raises(ReadOnlyViolationError, match="readonly mode") as refused:
        run_readonly_query(analytics_store, sql, database=sessions_db)
    assert refused.value.code == 164
    still = run_readonly_query(analytics_store, "SELECT count() FROM events", database=sessions_db)
    assert still.rows == [(41,)]


def test_syntax_errors_and_unknown_tables_are_typed(
    analytics_store: AnalyticsStore, sessions_db: str
) -> None:
    with pytest.raises(QuerySyntaxError, match="Syntax error") as syntax:
        run_readonly_query(analytics_store, "SELEC 1", database=sessions_db)
    assert syntax.value.code == 62
    with pytest.raises(AnalystQueryError, match="Unknown table") as unknown:
        run_readonly_query(analytics_store, "SELECT * FROM no_such_table", database=sessions_db)
    assert (type(unknown.value), unknown.value.code) == (AnalystQueryError, 60)


def test_a_slow_query_is_stopped_at_its_timeout(analytics_store: AnalyticsStore) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="Timeout exceeded") as stopped:
        run_readonly_query(analytics_store, "SELECT count() FROM system.numbers", timeout_s=0.5)
    assert stopped.value.code == 159
    assert time.monotonic() - started < 5


def test_rows_are_capped_but_subqueries_are_not(analytics_store: AnalyticsStore) -> None:
    cut = run_readonly_query(analytics_store, "SELECT number FROM system.numbers LIMIT 100",
                             max_rows=10)  # fmt: skip
    assert (cut.columns, cut.rows, cut.truncated) == (["number"], [(n,) for n in range(10)], True)
    exact = run_readonly_query(analytics_store, "SELECT number FROM numbers(10)", max_rows=10)
    assert (len(exact.rows), exact.truncated) == (10, False)
    inner = run_readonly_query(
        analytics_store, "SELECT count() FROM (SELECT number FROM numbers(1000))", max_rows=1
    )
    assert (inner.rows, inner.truncated) == ([(1000,)], False)
    assert inner.elapsed_s >= 0


# -- the README's example queries -------------------------------------------------------


def run_example(store: AnalyticsStore, db: str, name: str) -> list[tuple[object, ...]]:
    result = run_readonly_query(store, analyst_queries()[name].sql, database=db)
    assert not result.truncated
    return result.rows


def test_the_example_queries_are_the_readme_queries() -> None:
    examples = analyst_queries()
    assert list(examples) == [
        "latency_percentiles_by_provider", "slowest_turns", "interruption_rate",
        "usage_per_session", "transcript_stability",
    ]  # fmt: skip
    readme = README.read_text()
    for example in examples.values():
        assert example.sql in readme, f"README.md lacks the current {example.name} query"


def test_latency_percentiles_by_provider(analytics_store: AnalyticsStore, sessions_db: str) -> None:
    assert run_example(analytics_store, sessions_db, "latency_percentiles_by_provider") == [
        ("e2e", "google", "gemini-2.0-flash", 1, 2400.0, 2400.0, 2400.0, 2400.0),
        ("e2e", "openai", "gpt-4o-mini", 2, 1050.0, 1200.0, 1200.0, 1200.0),
        ("eou", "deepgram", "nova-3", 3, 500.0, 500.0, 600.0, 600.0),
        ("llm", "google", "gemini-2.0-flash", 1, 1100.0, 1100.0, 1100.0, 1100.0),
        ("llm", "openai", "gpt-4o-mini", 2, 455.0, 500.0, 500.0, 500.0),
        ("stt", "deepgram", "nova-3", 3, 250.0, 250.0, 300.0, 300.0),
        ("tts", "cartesia", "sonic-2", 3, 250.0, 250.0, 300.0, 300.0),
    ]


def test_slowest_turns(analytics_store: AnalyticsStore, sessions_db: str) -> None:
    rows = run_example(analytics_store, sessions_db, "slowest_turns")
    assert [row[1:] for row in rows] == [
        ("sess-b", "b-1", 2.4, 0.4, 0.2, 1.1, 0.3, 0, False, "google", "gemini-2.0-flash",
         "How far is the moon?"),
        ("sess-a", "a-1", 1.2, 0.5, 0.25, 0.41, 0.2, 0, False, "openai", "gpt-4o-mini",
         "What is photosynthesis?"),
        ("sess-a", "a-2", 0.9, 0.6, 0.3, 0.5, 0.25, 1, True, "openai", "gpt-4o-mini",
         "Tell me more."),
    ]  # fmt: skip


def test_interruption_rate(analytics_store: AnalyticsStore, sessions_db: str) -> None:
    rows = run_example(analytics_store, sessions_db, "interruption_rate")
    assert sum(r[1] for r in rows) == 3  # answered turns (the window may span two hours)
    assert sum(r[2] for r in rows) == 1
    assert rows[-1][3] in (0.5, 1.0, 0.333)


def test_usage_per_session(analytics_store: AnalyticsStore, sessions_db: str) -> None:
    rows = run_example(analytics_store, sessions_db, "usage_per_session")
    assert [row[:-1] for row in rows] == [
        ("sess-a", "room-a", 300, 120, 100, 3.0, 250, 7.0),
        ("sess-b", "room-b", 90, 0, 30, 1.5, 80, 2.5),
    ]


def test_transcript_stability(analytics_store: AnalyticsStore, sessions_db: str) -> None:
    # five interims; "tall me more" was corrected to "Tell me more." (1 of 12 characters)
    assert run_example(analytics_store, sessions_db, "transcript_stability") == [
        ("en", 5, 0.8, round(1 / 12 / 5, 3)),
    ]


# -- the endpoint of the folder's owner -------------------------------------------------


def test_the_endpoint_answers_on_loopback(endpoint: QueryEndpoint) -> None:
    assert endpoint.endpoint is not None
    url, token = endpoint.endpoint.url, endpoint.token
    assert url.startswith("http://127.0.0.1:")
    result = query_endpoint(url, "SELECT turn_id, e2e_latency FROM turns ORDER BY turn_id",
                            token=token)  # fmt: skip
    assert result.rows == [("a-1", 1.2), ("a-2", 0.9), ("b-1", 2.4)]
    assert (result.columns, result.truncated) == (["turn_id", "e2e_latency"], False)
    with urllib.request.urlopen(url + "/health", timeout=10) as response:
        assert json.loads(response.read())["status"] == "ok"


def test_the_endpoint_keeps_the_guards_and_their_types(endpoint: QueryEndpoint) -> None:
    assert endpoint.endpoint is not None
    url, token = endpoint.endpoint.url, endpoint.token
    with pytest.raises(ReadOnlyViolationError) as refused:
        query_endpoint(url, "DROP TABLE events", token=token)
    assert refused.value.code == 164
    with pytest.raises(QueryTimeoutError):
        query_endpoint(url, "SELECT count() FROM system.numbers", token=token, timeout_s=0.3)
    cut = query_endpoint(url, "SELECT * FROM events", token=token, max_rows=5)
    assert (len(cut.rows), cut.truncated) == (5, True)
    with pytest.raises(EndpointUnavailableError, match="refused the token"):
        query_endpoint(url, "SELECT 1", token="wrong")
    with pytest.raises(EndpointUnavailableError, match="refused the token"):
        query_endpoint(url, "SELECT 1")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog.projections.clickhouse", "query", *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_the_command_finds_the_owner_endpoint(
    analytics_store: AnalyticsStore, endpoint: QueryEndpoint, sessions_db: str
) -> None:
    assert isinstance(analytics_store, ChdbStore)
    url = analytics_store.url  # owned by this test process: the command cannot open it
    by_session = "SELECT session_id, count() AS n FROM events GROUP BY session_id ORDER BY 1"
    answer = cli("--url", url, "--database", sessions_db, "--format", "json", by_session)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["rows"] == [["sess-a", 28], ["sess-b", 13]]

    table = cli("--url", url, "SELECT turn_id, tool_calls FROM turns ORDER BY 1")  # its default
    assert table.stdout.splitlines() == [
        "turn_id  tool_calls", "-------  ----------", "a-1      0", "a-2      1", "b-1      0",
    ]  # fmt: skip
    csv = cli("--url", url, "--format", "csv", "SELECT 1 AS one, NULL AS nothing")
    assert csv.stdout == "one,nothing\n1,\n"

    refused = cli("--url", url, "--database", sessions_db, "DROP TABLE events")
    assert refused.returncode == 1
    assert refused.stderr.startswith("ReadOnlyViolationError: ")


def test_the_command_says_when_the_owner_serves_no_endpoint(
    analytics_store: AnalyticsStore,
) -> None:
    assert isinstance(analytics_store, ChdbStore)
    assert not (analytics_store.path / ENDPOINT_FILE).exists()
    answer = cli("--url", analytics_store.url, "SELECT 1")
    assert answer.returncode == 3
    assert "publishes no query endpoint" in answer.stderr


def test_the_command_takes_an_endpoint(endpoint: QueryEndpoint) -> None:
    assert endpoint.endpoint is not None
    assert endpoint.token is not None
    url, token = endpoint.endpoint.url, endpoint.token
    answer = cli("--endpoint", url, f"--token={token}", "SELECT 41 + 1 AS x")
    assert (answer.returncode, answer.stdout) == (0, "x\n--\n42\n")


def test_another_process_reads_the_analytics_through_the_endpoint(
    analytics_store: AnalyticsStore, endpoint: QueryEndpoint, sessions_db: str
) -> None:
    """The API beside the streams worker cannot open the chDB folder: ``open_reader``
    gives it a store that reads through the worker's endpoint, values typed as usual."""
    assert isinstance(analytics_store, ChdbStore)
    assert endpoint.endpoint is not None
    reader = EndpointStore(endpoint.endpoint)
    assert queries.session_events(reader, sessions_db, "sess-b", limit=3) == (
        queries.session_events(analytics_store, sessions_db, "sess-b", limit=3)
    )
    start = minute_start()
    window = {"start": start, "end": start + timedelta(minutes=3)}
    assert queries.overview(reader, sessions_db, **window) == queries.overview(
        analytics_store, sessions_db, **window
    )
    with pytest.raises(ReadOnlyViolationError):
        reader.command(f"DROP DATABASE `{sessions_db}`")

    script = (
        "import json, sys; from projections.clickhouse import queries; "
        "from projections.clickhouse.query_endpoint import open_reader; "
        "reader = open_reader(sys.argv[1]); "
        "print(json.dumps([type(reader).__name__, queries.checksum(reader, sys.argv[2])]))"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, analytics_store.url, sessions_db],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    kind, digests = json.loads(child.stdout)
    assert kind == "EndpointStore"
    assert digests == queries.checksum(analytics_store, sessions_db)
