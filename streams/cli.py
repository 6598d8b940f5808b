"""`python -m turnlog.streams worker`: run the streams worker (Faust) until SIGTERM or Ctrl-C.

Settings come from the environment (`TURNLOG_*`, see `streams.config`). Exit codes: 0
stopped, 1 failed at start or while running, 2 invalid settings.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from turnlog.projections.clickhouse.store import exit_past_chdb_teardown
from turnlog.streams import checksum, rebuild
from turnlog.streams.errors import ConfigurationError

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
rebuild.register(cli)
checksum.register(cli)


@cli.callback()
def main() -> None:
    """Turnlog stream processors."""


@cli.command()
def worker(
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Log level.")] = "info",
) -> None:
    """Consume turnlog.events into PostgreSQL and ClickHouse; produce the derived topics
    and dead letters; serve /metrics and the analysts' query endpoint on loopback."""
    from faust import Worker

    from turnlog.streams.app import create_app
    from turnlog.streams.config import load_streams_settings

    try:
        settings = load_streams_settings()
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    app = create_app(settings)
    code = 1
    try:
        Worker(app, loglevel=loglevel).execute_from_commandline()  # raises SystemExit
    except SystemExit as stopped:
        code = stopped.code if isinstance(stopped.code, int) else 1
    # The worker has stopped (offsets committed, sinks closed): skip the interpreter's
    # teardown, where chDB's background threads may crash (see `runtime.on_stop`).
    exit_past_chdb_teardown(code)
