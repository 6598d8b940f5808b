"""``turnlog``: the command line of the platform.

`turnlog up` starts everything (the local stack and our three services) and holds a demo
call; `turnlog down` stops everything; `turnlog stack ...` handles the stack alone.
"""

from __future__ import annotations

import logging
import sys
import time

import typer
from rich.console import Console
from rich.table import Table

from turnlog.infra.erase_cli import erase_app
from turnlog.infra.stack.components import ComponentStatus
from turnlog.infra.stack.config import StackSettings, load_settings
from turnlog.infra.stack.errors import StackError
from turnlog.infra.stack.stack import Stack
from turnlog.streams.logfilter import install_rate_limit

app = typer.Typer(help="Turnlog: capture, query and replay every voice-agent conversation.",
                  no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local stack (Kafka, PostgreSQL, chDB, LiveKit) with no Docker.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(erase_app, name="erase")
console = Console()
err = Console(stderr=True)


def _say(line: str) -> None:
    console.print(line, highlight=False)


def _stack() -> Stack:
    return Stack(load_settings())


@stack_app.command("up")
def stack_up() -> None:
    """Start Kafka, PostgreSQL and LiveKit, create topics, apply migrations. Idempotent."""
    stack = _stack()
    started = time.monotonic()
    try:
        report = stack.up(report=_say)
    except StackError as exc:
        err.print(f"[bold red]stack up failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    console.print(f"[bold green]ready[/] in {time.monotonic() - started:.1f} s ({parts})")
    _print_addresses(stack.settings)


def _print_addresses(s: StackSettings) -> None:
    _say(f"  kafka      {s.kafka_bootstrap}\n  postgres   {_redacted(s.postgres_dsn)}"
         f"\n  clickhouse {s.analytics_url}\n  livekit    {s.livekit_url} "
         f"(key {s.livekit_api_key})")


def _print_status(statuses: list[ComponentStatus], as_json: bool) -> None:
    if as_json:
        import json

        console.print_json(json.dumps([s.__dict__ for s in statuses]))
    else:
        table = Table("component", "state", "address", "pid", "detail")
        for s in statuses:
            state = "[green]running[/]" if s.running else "[red]down[/]"
            table.add_row(s.name, state, s.address, str(s.pid or ""), s.detail)
        console.print(table)
    if not all(s.running for s in statuses):
        raise typer.Exit(1)


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """Report what runs; exits 1 when a component is down."""
    _print_status(_stack().status(), as_json)


@stack_app.command("down")
def stack_down() -> None:
    """Stop Kafka, PostgreSQL and LiveKit (data is kept). Idempotent."""
    try:
        _stack().down(report=_say)
    except StackError as exc:
        err.print(f"[bold red]stack down failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def up(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="hold the demo call at the end"),
) -> None:
    """Start everything (stack and services, each health-checked), then hold a demo voice
    call and print its transcript. Idempotent; Ctrl-C stops everything."""
    from turnlog.infra.platform import Platform

    settings = load_settings()
    platform = Platform(settings)
    started = time.monotonic()
    try:
        seconds = platform.up(report=_say)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
        console.print(f"[bold green]platform ready[/] in {time.monotonic() - started:.1f} s "
                      f"({parts}); logs in {settings.logs_dir}/", highlight=False)
        if demo:
            _demo(settings)
            console.print(f"[bold green]done[/] in {time.monotonic() - started:.1f} s; the "
                          "platform keeps running (stop it with `make down`)", highlight=False)
        _announce_console(settings)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: stopping everything[/]")
        platform.down(report=_say)
        raise typer.Exit(130) from None
    except StackError as exc:
        err.print(f"[bold red]up failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _announce_console(settings: StackSettings) -> None:
    """Where the console is, and where the key to sign in with is kept (never the key)."""
    from turnlog.infra.demo.run import demo_key

    key_file = settings.run_dir / "demo-api-key"
    demo_key(settings, path=key_file)
    console.print(f"[bold]console[/]  {settings.api_url}/  sign in with the API key kept in "
                  f"{key_file} (cat {key_file})", highlight=False)


def _demo(settings: StackSettings) -> None:
    from turnlog.infra.demo.run import demo_key, describe, run_demo

    _say("demo call: a LiveKit client asks our API for a token, joins a room and talks to "
         "the tutor agent...")
    outcome = run_demo(settings, key=demo_key(settings))
    for line in describe(outcome, settings):
        _say(line)


@app.command()
def demo() -> None:
    """Hold another demo call on the running platform and print its transcript."""
    settings = load_settings()
    try:
        _demo(settings)
    except StackError as exc:
        err.print(f"[bold red]demo failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def down() -> None:
    """Stop everything: the services, then the stack (data is kept). Idempotent."""
    from turnlog.infra.platform import Platform

    try:
        Platform(load_settings()).down(report=_say)
    except StackError as exc:
        err.print(f"[bold red]down failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """Report the stack and the services; exits 1 when something is down."""
    from turnlog.infra.platform import Platform

    _print_status(Platform(load_settings()).status(), as_json)


@app.command()
def provision() -> None:
    """Create the topics and apply the PostgreSQL and ClickHouse migrations on stores named
    by the services' variables (TURNLOG_KAFKA_BOOTSTRAP, TURNLOG_POSTGRES_DSN,
    TURNLOG_CLICKHOUSE_URL...), e.g. docker-compose.yml's. Idempotent."""
    from pydantic import ValidationError

    from turnlog.infra.provision import ProvisionSettings
    from turnlog.infra.provision import provision as run_provision

    try:
        settings = ProvisionSettings()
    except ValidationError as exc:
        names = ", ".join(str(e["loc"][0]) for e in exc.errors(include_input=False))
        err.print(f"[bold red]provision failed:[/] invalid or missing settings: {names}")
        raise typer.Exit(2) from None
    try:
        run_provision(settings, report=_say)
    except StackError as exc:
        err.print(f"[bold red]provision failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _redacted(dsn: str) -> str:
    """A DSN without its password, for printing."""
    head, sep, tail = dsn.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return dsn
    scheme, _, user_pass = head.partition("//")
    return f"{scheme}//{user_pass.split(':', 1)[0]}:***@{tail}"


def main() -> None:
    # our own progress at INFO; the LiveKit SDK's chatter (it logs on the root logger) not
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("turnlog").setLevel(logging.INFO)
    # `stack up` and `provision` talk to Kafka: an unreachable broker is one line per window
    install_rate_limit()
    app()


if __name__ == "__main__":
    main()
