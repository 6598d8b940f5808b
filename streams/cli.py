"""`python -m turnlog.streams worker [--projection NAME]`: run projections until SIGTERM or Ctrl-C.

Settings come from the environment (`TURNLOG_*`, see `streams.config`). Exit codes: 0
stopped, 1 failed while running (a programming error: dependencies that are down are
waited for), 2 invalid settings.
"""

from __future__ import annotations

import gc
import sys
from typing import Annotated, Final

import typer

from turnlog.projections.clickhouse.store import exit_past_chdb_teardown
from turnlog.streams import checksum, rebuild
from turnlog.streams.errors import ConfigurationError
from turnlog.streams.logfilter import install_rate_limit

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
rebuild.register(cli)
checksum.register(cli)


@cli.callback()
def main() -> None:
    """Turnlog stream processors."""


GC_THRESHOLD: Final = (50_000, 20, 20)
"""Generation-0 threshold of the worker: batches of 10,000 events keep about that many
young objects alive, which the default (700) scans again and again (measured: most of
the decode time)."""


@cli.command()
def worker(
    projection: Annotated[
        list[str] | None,
        typer.Option("--projection", "-p",
                     help="postgres, clickhouse, derived, keys; repeat for several (default all)."),
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Log level.")] = "info",
) -> None:
    """Project turnlog.events: PostgreSQL read models, ClickHouse analytics, derived
    topics (each its own consumer group); dead letters to the DLQ; /metrics and the
    analysts' query endpoint on loopback."""
    from faust import Worker

    from turnlog.streams.app import PROJECTIONS, create_app
    from turnlog.streams.config import load_streams_settings

    try:
        settings = load_streams_settings()
        app = create_app(settings, tuple(projection or PROJECTIONS))
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    install_rate_limit()
    # Everything imported so far lives as long as the process: keep it out of the
    # collector's scans, and collect young objects less often (see GC_THRESHOLD).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    code = 1
    try:
        Worker(app, loglevel=loglevel).execute_from_commandline()  # raises SystemExit
    except SystemExit as stopped:
        code = stopped.code if isinstance(stopped.code, int) else 1
    # The worker has stopped (positions stored, connections closed): skip the
    # interpreter's teardown, where chDB's background threads may crash.
    exit_past_chdb_teardown(code)
