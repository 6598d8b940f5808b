"""Local infrastructure: the stack launcher (Kafka, PostgreSQL, chDB, LiveKit), the demo call,
and service configs. `main` is the `turnlog` command."""

from __future__ import annotations

import sys
from typing import Final

PLATFORM_MODULES: Final = frozenset(
    {"faust", "mode", "fastapi", "psycopg", "psycopg_pool", "chdb", "clickhouse_connect",
     "uvicorn"}
)  # fmt: skip
"""What the `platform` extra installs: without it, `turnlog` says so instead of a trace."""


def main() -> None:
    """The `turnlog` command (see `turnlog.infra.cli`)."""
    try:
        from turnlog.infra import cli
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in PLATFORM_MODULES:
            raise
        print(
            f"turnlog: the platform commands need the platform extra ({error.name} is not "
            "installed): pip install 'turnlog[platform]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    cli.main()
