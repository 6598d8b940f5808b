"""`python -m turnlog.streams rebuild`: rebuild the read models from offset 0 of the log into fresh
tables, then swap them in while the streams worker keeps running.

1. Fresh targets, migrated: PostgreSQL schema `<schema>_rebuild_<stamp>`, ClickHouse
   database `<db>_rebuild_<stamp>` (UTC stamp). A ClickHouse-only rebuild projects into
   the scratch schema as well, dropped at the end: live, ClickHouse receives exactly the
   events PostgreSQL took, so a rebuild must ask PostgreSQL too.
2. Replay: a consumer without a group (manual assignment: the worker's group and offsets
   are untouched) reads each partition from its first offset through the worker's own
   `BatchProcessor` (same decoding, isolation and sinks), with a progress bar, up to the
   end offsets snapshotted at the start, but never past what live processing has applied
   (`consumer_offsets`, `positions`): the live ClickHouse writer skips records below its
   cached positions, so a rebuild ahead of it would get some records twice after the swap.
   Dead letters are counted, not sent again (live processing sent them); derived records
   are not built (their topics have them).
3. Catch up: without a lock while live processing moves on, then under the EXCLUSIVE
   projection lock (`streams.locks`: live batches hold it shared, so none is in flight
   and none starts) to exactly what live processing has applied: PostgreSQL's
   `consumer_offsets`, and ClickHouse's `positions` once the worker's last ClickHouse
   write (after its PostgreSQL transaction, outside the lock) has landed.
4. Swap, still under the lock (`targets`). PostgreSQL: ONE transaction renames `<schema>`
   to `<schema>_old_<stamp>` and the rebuild to `<schema>`. Live statements name their
   tables by schema, and PostgreSQL re-resolves the names of cached (prepared) plans after
   a schema rename, so the next live batch writes into the rebuild, through the same
   psycopg prepared statements (tests/integration/test_rebuild_swap.py). ClickHouse: `EXCHANGE
   TABLES` per table, views staying in place (they resolve tables by name; RENAME
   DATABASE would leave them naming the wrong database). `--dry-run` compares checksums
   under the lock instead, then drops the rebuild.

chDB: one process owns a folder. While the streams worker owns it, a rebuild with
ClickHouse refuses, naming the owner's pid: stop the worker (the rebuild then opens the
folder itself), or use a ClickHouse server, or rebuild PostgreSQL alone.

Exit codes: 0 swapped, or a dry run found both equal; 1 a dry run found differences;
2 invalid settings or arguments; 3 cannot start (service down, chDB folder owned, live
schema missing), nothing created; 4 failed on the way: what it made is dropped, and live
is untouched unless the message says otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console

from turnlog.projections.clickhouse.store import AnalyticsStore, ChdbStore
from turnlog.streams.checksum import differing, render, run_app
from turnlog.streams.config import StreamsSettings, load_streams_settings
from turnlog.streams.errors import ConfigurationError
from turnlog.streams.rebuild.plan import (
    RebuildError,
    RebuildOptions,
    RebuildRefusedError,
    RebuildReport,
    Target,
)
from turnlog.streams.rebuild.run import Rebuild
from turnlog.streams.rebuild.targets import open_store

__all__ = [
    "RebuildError",
    "RebuildOptions",
    "RebuildRefusedError",
    "RebuildReport",
    "Target",
    "main",
    "register",
    "run_rebuild",
]

EXIT_DIFFERENT = 1
EXIT_USAGE = 2


async def run_rebuild(
    settings: StreamsSettings,
    options: RebuildOptions,
    *,
    store: AnalyticsStore | None = None,
    console: Console | None = None,
) -> RebuildReport:
    """Rebuild and swap (or compare); `RebuildError` with an `exit_code` when it cannot.
    `store`: the live ClickHouse store; default: opened from the settings."""
    if store is None and options.target.clickhouse:
        store = open_store(settings)
        if isinstance(store, ChdbStore):
            # the folder is this process's now: no worker writes it, nothing to wait for
            options = dataclasses.replace(options, settle_seconds=0.0)
    rebuild = Rebuild(settings, options, store=store, console=console or Console(stderr=True))
    return await rebuild.run()


def print_report(report: RebuildReport, *, dry_run: bool, console: Console) -> None:
    names = report.names
    console.print(
        f"rebuilt {report.target.value} from {report.replayed:,} records of the log in "
        f"{report.seconds:.1f}s ({report.dead_letters:,} dead letters, not sent again; no "
        f"derived records re-emitted); live processing paused {report.lock_seconds:.2f}s "
        f"(the last {report.caught_up_locked:,} records were caught up under the lock)",
        markup=False,
    )  # fmt: skip
    if dry_run:
        render(report.comparison, left="live", right="rebuilt", console=console)
        console.print("dry run: nothing swapped; the rebuild was dropped", markup=False)
        return
    live = [n for n, on in ((names.schema, report.target.postgres),
                            (names.database, report.target.clickhouse)) if on]  # fmt: skip
    for name in live:
        console.print(f"swapped in: {name} is now the rebuild", markup=False)
    for where in report.kept:
        console.print(f"the old projection is kept: {where} (drop it when done)", markup=False)


def rebuild_command(
    target: Annotated[Target, typer.Option(help="Which projection to rebuild.")] = Target.BOTH,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Rebuild, compare checksums with live, drop the rebuild; no swap.",
    )] = False,
    keep_old: Annotated[bool, typer.Option(
        "--keep-old/--drop-old", help="Keep the swapped-out projection (<name>_old_<stamp>).",
    )] = True,
    batch_size: Annotated[int, typer.Option(
        min=1, max=100_000, help="Events per batch.")] = 10_000,
    settle: Annotated[float, typer.Option(
        min=0, help="Seconds to wait for the worker's last ClickHouse write under the lock.",
    )] = 10.0,
) -> None:  # fmt: skip
    """Rebuild PostgreSQL and/or ClickHouse from offset 0 into fresh tables, then swap."""
    err = Console(stderr=True)
    try:
        settings = load_streams_settings()
    except ConfigurationError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    options = RebuildOptions(target=target, dry_run=dry_run, keep_old=keep_old,
                             batch_size=batch_size, settle_seconds=settle)  # fmt: skip
    try:
        report = asyncio.run(run_rebuild(settings, options, console=err))
    except RebuildError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(error.exit_code) from None
    print_report(report, dry_run=dry_run, console=Console())
    different = differing(report.comparison)
    if different:
        err.print(f"the rebuild differs from live: {', '.join(different)}", markup=False)
        raise typer.Exit(EXIT_DIFFERENT)


def register(app: typer.Typer) -> None:
    """Add `rebuild` to the `python -m turnlog.streams` app."""
    app.command(name="rebuild")(rebuild_command)


def main(argv: Sequence[str] | None = None) -> int:
    """`rebuild` alone, for tests and `python -c`; returns the exit code."""
    app = typer.Typer(add_completion=False)
    register(app)
    return run_app(app, argv)
