"""`python -m turnlog.streams checksum`: compare two projections table by table.

    python -m turnlog.streams checksum --pg-schema public --pg-schema public_old_20250301120000
    python -m turnlog.streams checksum --ch-database turnlog \
        --ch-database turnlog_old_20250301120000

Give `--pg-schema` twice, `--ch-database` twice, or both pairs. Per table, the digests of
both sides are printed side by side: PostgreSQL's from `projections.postgres.checksum`
(rows and an order-independent digest; the ledger, the offsets and write times left out),
ClickHouse's from `projections.clickhouse.queries.checksum` (FINAL, aggregate states
finalized; the writer's positions left out). Settings (DSN, ClickHouse URL) come from the
environment, as for the worker (`streams.config`). A chDB folder the streams worker owns
is read through the worker's query endpoint.

Exit codes: 0 every table is equal; 1 some differ (named on stderr); 2 invalid arguments
or settings; 3 a projection cannot be read (missing schema or database, unreachable).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from turnlog.projections.clickhouse.queries import checksum as clickhouse_checksum
from turnlog.projections.clickhouse.query_endpoint import chdb_folder, open_reader
from turnlog.projections.clickhouse.store import (
    AnalyticsStore,
    AnalyticsStoreError,
    chdb_owner,
    connect,
)
from turnlog.projections.postgres.checksum import checksum as postgres_checksum
from turnlog.streams.config import StreamsSettings, load_streams_settings, redact_url
from turnlog.streams.errors import ConfigurationError

POSTGRES: Final = "postgres"
CLICKHOUSE: Final = "clickhouse"
EXIT_DIFFERENT: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREADABLE: Final = 3


class UnreadableProjectionError(Exception):
    """A schema or database cannot be read: missing, not migrated, unreachable."""


@dataclass(frozen=True, slots=True)
class TableDigest:
    """One table of both projections: `rows:digest` on each side."""

    sink: str
    table: str
    left: str
    right: str

    @property
    def equal(self) -> bool:
        return self.left == self.right

    @property
    def name(self) -> str:
        return f"{self.sink} {self.table}"


def compare_postgres(conn: psycopg.Connection[Any], left: str, right: str) -> list[TableDigest]:
    """The read models of schemas `left` and `right`, table by table."""
    sides = [_postgres_digests(conn, schema) for schema in (left, right)]
    return _pair(POSTGRES, *sides)


def compare_clickhouse(store: AnalyticsStore, left: str, right: str) -> list[TableDigest]:
    """The analytics tables of databases `left` and `right`, table by table."""
    sides = [_clickhouse_digests(store, database) for database in (left, right)]
    return _pair(CLICKHOUSE, *sides)


def differing(digests: Sequence[TableDigest]) -> list[str]:
    """`"<sink> <table>"` of every table whose two sides differ."""
    return [d.name for d in digests if not d.equal]


def render(digests: Sequence[TableDigest], *, left: str, right: str, console: Console) -> None:
    """The digests side by side, one row per table."""
    table = Table(title="projection checksums (rows:digest)")
    table.add_column("sink")
    table.add_column("table")
    table.add_column(left)
    table.add_column(right)
    table.add_column("")
    for d in digests:
        mark = "[green]equal[/]" if d.equal else "[bold red]DIFFERS[/]"
        table.add_row(d.sink, d.table, d.left, d.right, mark)
    console.print(table)


def _postgres_digests(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    try:
        return postgres_checksum(conn, schema)
    except (LookupError, psycopg.Error) as error:
        raise UnreadableProjectionError(f"PostgreSQL schema {schema!r}: {error}") from error


def _clickhouse_digests(store: AnalyticsStore, database: str) -> dict[str, str]:
    try:
        found = store.query(
            "SELECT count() FROM system.databases WHERE name = {db:String}",
            parameters={"db": database},
        )
        if not found or int(found[0][0]) == 0:
            raise UnreadableProjectionError(f"ClickHouse has no database {database!r}")
        return clickhouse_checksum(store, database)
    except (AnalyticsStoreError, ValueError) as error:
        raise UnreadableProjectionError(f"ClickHouse database {database!r}: {error}") from error


def _pair(sink: str, left: dict[str, str], right: dict[str, str]) -> list[TableDigest]:
    missing = "(missing)"
    tables = list(left) + [t for t in right if t not in left]
    return [TableDigest(sink, t, left.get(t, missing), right.get(t, missing)) for t in tables]


def open_analytics_reader(settings: StreamsSettings) -> AnalyticsStore:
    """A store to read the analytics from: this process's own chDB folder, the folder
    itself when nobody owns it, or the owner's query endpoint (`open_reader`)."""
    url = settings.analytics_url
    if url.startswith("chdb:") and chdb_owner(chdb_folder(url)) == os.getpid():
        return connect(url)
    return open_reader(url, may_open_chdb=True)


def compare(
    settings: StreamsSettings,
    *,
    pg_schemas: Sequence[str] = (),
    ch_databases: Sequence[str] = (),
    store: AnalyticsStore | None = None,
) -> list[TableDigest]:
    """Digests of both projections of each pair given; `UnreadableProjectionError`."""
    digests: list[TableDigest] = []
    if pg_schemas:
        dsn = settings.postgres_dsn.get_secret_value()
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                digests += compare_postgres(conn, pg_schemas[0], pg_schemas[1])
        except psycopg.OperationalError as error:
            raise UnreadableProjectionError(
                f"PostgreSQL {redact_url(dsn)} does not answer: {error}"
            ) from error
    if ch_databases:
        try:
            reader = store if store is not None else open_analytics_reader(settings)
        except AnalyticsStoreError as error:
            raise UnreadableProjectionError(
                f"ClickHouse {redact_url(settings.analytics_url)}: {error}"
            ) from error
        digests += compare_clickhouse(reader, ch_databases[0], ch_databases[1])
    return digests


def checksum_command(
    pg_schema: Annotated[
        list[str] | None,
        typer.Option("--pg-schema", help="A PostgreSQL schema; give it twice."),
    ] = None,
    ch_database: Annotated[
        list[str] | None,
        typer.Option("--ch-database", help="A ClickHouse database; give it twice."),
    ] = None,
) -> None:
    """Compare two projections table by table; exit 1 when any table differs."""
    schemas, databases = pg_schema or [], ch_database or []
    if not schemas and not databases:
        raise typer.BadParameter("give --pg-schema twice and/or --ch-database twice")
    for option, values in (("--pg-schema", schemas), ("--ch-database", databases)):
        if values and len(values) != 2:
            raise typer.BadParameter(f"give it exactly twice, not {len(values)} times",
                                     param_hint=option)  # fmt: skip
    err = Console(stderr=True)
    try:
        settings = load_streams_settings()
        digests = compare(settings, pg_schemas=schemas, ch_databases=databases)
    except ConfigurationError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    except UnreadableProjectionError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(EXIT_UNREADABLE) from None
    left = " / ".join(x[0] for x in (schemas, databases) if x)
    right = " / ".join(x[1] for x in (schemas, databases) if x)
    render(digests, left=left, right=right, console=Console())
    different = differing(digests)
    if different:
        err.print(f"differ: {', '.join(different)}", markup=False)
        raise typer.Exit(EXIT_DIFFERENT)


def register(app: typer.Typer) -> None:
    """Add `checksum` to the `python -m turnlog.streams` app."""
    app.command(name="checksum")(checksum_command)


def run_app(app: typer.Typer, argv: Sequence[str] | None) -> int:
    """Run a Typer app on `argv` and return its exit code instead of exiting."""
    try:
        result = app(args=list(sys.argv[1:] if argv is None else argv), standalone_mode=False)
    except typer.TyperException as error:  # usage errors: exit code 2
        show: Any = getattr(error, "show", None)
        if callable(show):
            show()
        else:
            print(f"error: {error.format_message()}", file=sys.stderr)
        return error.exit_code
    except typer.Abort:
        return 130
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`checksum` alone, for tests and `python -c`; returns the exit code."""
    app = typer.Typer(add_completion=False)
    register(app)
    return run_app(app, argv)
