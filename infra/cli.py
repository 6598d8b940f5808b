"""``turnlog``: the command line of the platform (local stack for now)."""

from __future__ import annotations

import logging
import sys
import time

import typer
from rich.console import Console
from rich.table import Table

from infra.stack.config import load_settings
from infra.stack.errors import StackError
from infra.stack.stack import Stack

app = typer.Typer(help="Turnlog: capture, query and replay every voice-agent conversation.",
                  no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local stack (Kafka, PostgreSQL, chDB) with no Docker.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console()
err = Console(stderr=True)


def _stack() -> Stack:
    return Stack(load_settings())


@stack_app.command()
def up() -> None:
    """Start Kafka and PostgreSQL, create topics, apply migrations. Idempotent."""
    stack = _stack()
    started = time.monotonic()
    try:
        report = stack.up(report=lambda line: console.print(line, highlight=False))
    except StackError as exc:
        err.print(f"[bold red]stack up failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    console.print(f"[bold green]ready[/] in {time.monotonic() - started:.1f} s ({parts})")
    s = stack.settings
    console.print(f"  kafka      {s.kafka_bootstrap}\n  postgres   {_redacted(s.postgres_dsn)}"
                  f"\n  clickhouse {s.analytics_url}", highlight=False)


@stack_app.command()
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """Report what runs; exits 1 when a component is down."""
    stack = _stack()
    statuses = stack.status()
    if as_json:
        console.print_json(stack.status_json())
    else:
        table = Table("component", "state", "address", "pid", "detail")
        for s in statuses:
            state = "[green]running[/]" if s.running else "[red]down[/]"
            table.add_row(s.name, state, s.address, str(s.pid or ""), s.detail)
        console.print(table)
    if not all(s.running for s in statuses):
        raise typer.Exit(1)


@stack_app.command()
def down() -> None:
    """Stop Kafka and PostgreSQL (data is kept). Idempotent."""
    try:
        _stack().down(report=lambda line: console.print(line, highlight=False))
    except StackError as exc:
        err.print(f"[bold red]stack down failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _redacted(dsn: str) -> str:
    """A DSN without its password, for printing."""
    head, sep, tail = dsn.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return dsn
    scheme, _, user_pass = head.partition("//")
    return f"{scheme}//{user_pass.split(':', 1)[0]}:***@{tail}"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    app()


if __name__ == "__main__":
    main()
