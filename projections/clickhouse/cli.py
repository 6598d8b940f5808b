"""``python -m turnlog.projections.clickhouse migrate | query``.

migrate --url URL --database DB
    Apply the analytics DDL. Exit codes: 0 applied or up to date; 3 the chDB folder is
    owned by a running process (which applies migrations itself when it opens the store);
    1 any other failure.
query "SQL" [--url URL | --endpoint URL [--token T]] [--database DB] [--format table|json|csv]
      [--timeout SECONDS] [--max-rows N]
    Run one read-only query. With a server URL it queries the server; with a chDB URL it
    opens the folder, or, when a running process owns it, sends the query to the endpoint
    that process publishes. SQL ``-`` reads the statement from stdin. Exit codes: 0 done;
    1 the query was refused or failed; 3 the store cannot be reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any, TextIO

from turnlog.projections.clickhouse.analyst import (
    AnalystQueryError,
    QueryResult,
    run_readonly_query,
)
from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.query_endpoint import (
    EndpointUnavailableError,
    chdb_folder,
    published_endpoint,
    query_endpoint,
)
from turnlog.projections.clickhouse.store import AnalyticsStoreError, StoreLockedError, connect

URL_VARIABLE = "TURNLOG_CLICKHOUSE_URL"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        return _migrate(args.url, args.database)
    return _query(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m turnlog.projections.clickhouse")
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="apply the analytics DDL")
    mig.add_argument("--url", required=True, help="chdb:///path or http(s)://host:port")
    mig.add_argument("--database", default="turnlog")
    query = sub.add_parser("query", help="run one read-only query")
    query.add_argument("sql", help="the statement, or - to read it from stdin")
    where = query.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"chdb:///path or http(s)://host (default ${URL_VARIABLE})")
    where.add_argument("--endpoint", help="a query endpoint, e.g. http://127.0.0.1:8765")
    query.add_argument("--token", help="bearer token of --endpoint")
    query.add_argument(
        "--database",
        help="default database of the query (default: the endpoint's, or turnlog)",
    )
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    query.add_argument("--max-rows", type=int, default=10_000, help="rows at most (10000)")
    return parser


def _migrate(url: str, database: str) -> int:
    try:
        store = connect(url)
    except StoreLockedError as exc:
        print(f"not migrated here: {exc}", file=sys.stderr)
        return 3
    applied = migrate_clickhouse(store, database=database)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
    print(f"migrations ({store.url}): " + (f"applied {names}" if applied else "up to date"))
    store.close()
    return 0


def _query(args: argparse.Namespace) -> int:
    sql = sys.stdin.read() if args.sql == "-" else args.sql
    try:
        result = _run(args, sql)
    except AnalystQueryError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except AnalyticsStoreError as exc:
        print(f"cannot query: {exc}", file=sys.stderr)
        return 3
    try:
        write_result(result, args.format, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader (e.g. head) has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if result.truncated:
        print(f"(truncated to {len(result.rows)} rows)", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, sql: str) -> QueryResult:
    limits: dict[str, Any] = {"timeout_s": args.timeout, "max_rows": args.max_rows}
    if args.endpoint:
        return query_endpoint(
            args.endpoint, sql, token=args.token, database=args.database, **limits
        )
    url = args.url or os.environ.get(URL_VARIABLE)
    if not url:
        raise EndpointUnavailableError(f"give --url or --endpoint, or set {URL_VARIABLE}")
    try:
        store = connect(url)
    except StoreLockedError:
        endpoint = published_endpoint(chdb_folder(url))
        return query_endpoint(
            endpoint.url, sql, token=endpoint.token, database=args.database, **limits
        )
    try:
        return run_readonly_query(store, sql, database=args.database or "turnlog", **limits)
    finally:
        store.close()


def write_result(result: QueryResult, fmt: str, out: TextIO) -> None:
    """Print ``result`` as an aligned table, JSON, or CSV with a header."""
    if fmt == "json":
        json.dump(result.to_json(), out, indent=2)
        out.write("\n")
        return
    null = "" if fmt == "csv" else "NULL"
    rows = [[null if v is None else _cell(v) for v in row] for row in result.to_json()["rows"]]
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(rows)
        return
    widths = [len(c) for c in result.columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in (result.columns, ["-" * w for w in widths], *rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        out.write("\n")


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
