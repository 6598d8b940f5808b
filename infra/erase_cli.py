"""``turnlog erase``: the erasure path from the command line, for operators on the
platform's host (the API's `DELETE /v1/sessions/{id}` is the same code).

Reads TURNLOG_POSTGRES_DSN, TURNLOG_KAFKA_BOOTSTRAP and TURNLOG_TOPIC_PREFIX (the local
stack's by default); the erasure is recorded as requested by `cli:<user>`.
"""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from turnlog.api.erasure import (
    Erasure,
    UnknownSubjectError,
    complete_pending,
    erase,
    sessions_of_identity,
    sessions_older_than,
)
from turnlog.infra.stack.config import StackSettings, load_settings

erase_app = typer.Typer(help="Erase a session or a participant everywhere (crypto-shredding).",
                        no_args_is_help=True)  # fmt: skip
console = Console()
err = Console(stderr=True)
Reason = Annotated[
    str | None, typer.Option("--reason", help="For the audit trail; no personal data.")
]
Schema = Annotated[str, typer.Option("--schema", help="PostgreSQL schema of the read models.")]


def _requested_by() -> str:
    return f"cli:{getpass.getuser()}"


def _call(settings: StackSettings) -> Any:
    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
            return fn(conn, *args, **kwargs)

    return call


def _run(settings: StackSettings, schema: str, **request: Any) -> Erasure:
    call = _call(settings)

    async def run() -> Erasure:
        try:
            return await erase(call, schema=schema, bootstrap=settings.kafka_bootstrap,
                               topic_prefix=settings.topic_prefix, **request)  # fmt: skip
        except UnknownSubjectError as error:
            err.print(f"[bold red]nothing erased:[/] {error}", highlight=False)
            raise typer.Exit(1) from None

    return asyncio.run(run())


def _show(erasure: Erasure) -> None:
    already = " (already erased before: this is that erasure)" if erasure.already else ""
    console.print(f"erasure {erasure.erasure_id}: {erasure.status}{already}", highlight=False)
    console.print(f"sessions: {', '.join(erasure.session_ids)}", highlight=False)
    table = Table("store", "what was done", "count")
    for step in erasure.steps:
        table.add_row(step.store, step.action, str(step.count))
    console.print(table)
    if erasure.status == "pending":
        console.print("Kafka could not be reached: the keys are destroyed and the read models "
                      "purged; run `turnlog erase pending` (or let the API's retention job) "
                      "write the tombstones and the proof.")  # fmt: skip


@erase_app.command("session")
def erase_session(session_id: str, reason: Reason = None, schema: Schema = "public") -> None:
    """Erase one session: its data key, its personal read-model rows, its compacted records."""
    _show(_run(load_settings(), schema, scope="session", session_ids=[session_id],
               requested_by=_requested_by(), reason=reason))  # fmt: skip


@erase_app.command("participant")
def erase_participant(identity: str, reason: Reason = None, schema: Schema = "public") -> None:
    """Erase every session the participant IDENTITY took part in."""
    settings = load_settings()
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        sessions = sessions_of_identity(conn, identity, schema=schema)
    if not sessions:
        err.print("[bold red]nothing erased:[/] no session is recorded for that identity")
        raise typer.Exit(1)
    _show(_run(settings, schema, scope="participant", session_ids=sessions,
               requested_by=_requested_by(), reason=reason, identity=identity))  # fmt: skip


@erase_app.command("older-than")
def erase_older(
    days: Annotated[
        int, typer.Argument(min=1, help="Erase sessions that started before this many days ago.")
    ],
    schema: Schema = "public",
) -> None:
    """Erase, in batches of 1,000, every session older than DAYS (what the retention job
    does), printing progress."""
    settings = load_settings()
    cutoff = datetime.now(UTC) - timedelta(days=days)
    total = 0
    while True:
        with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
            sessions = sessions_older_than(conn, cutoff, schema=schema)
        if not sessions:
            break
        erasure = _run(settings, schema, scope="retention", session_ids=sessions,
                       requested_by=_requested_by(), reason=f"older than {days} days")  # fmt: skip
        total += len(sessions)
        console.print(f"erased {total} sessions so far (erasure {erasure.erasure_id}, "
                      f"{erasure.status})", highlight=False)  # fmt: skip
    console.print(f"done: {total} sessions erased")


@erase_app.command("pending")
def erase_pending(schema: Schema = "public") -> None:
    """Finish the erasures whose Kafka part is pending."""
    settings = load_settings()
    done = asyncio.run(complete_pending(_call(settings), schema=schema,
                                        bootstrap=settings.kafka_bootstrap,
                                        topic_prefix=settings.topic_prefix))  # fmt: skip
    console.print(f"{done} pending erasure(s) completed")
