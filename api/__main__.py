"""`python -m turnlog.api [serve]` runs the API with uvicorn on `TURNLOG_API_HOST:TURNLOG_API_PORT`
(127.0.0.1:8000); `python -m turnlog.api keys create --name NAME --scopes tokens,read,admin`
prints a new API key once; `keys list` and `keys revoke KEY_ID` manage them.

Exit codes: 0 done; 1 a command failed; 2 invalid settings or arguments.
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from turnlog.api.errors import ApiError, ConfigurationError
from turnlog.api.keys import SCOPES, create_key, list_keys, revoke_key
from turnlog.api.settings import KeyStoreSettings, load_api_settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in (None, "serve"):
            return _serve()
        return _keys(args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        print(f"error: PostgreSQL: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m turnlog.api", description="Turnlog's HTTP API")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the API (the default)")
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--scopes", required=True, help=f"comma-separated, of {','.join(SCOPES)}")
    keys.add_parser("list", help="list the keys (never the keys themselves)")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    return parser


def _serve() -> int:
    import uvicorn

    from turnlog.api.app import create_app

    settings = load_api_settings()
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, loop="uvloop",
        http="httptools", server_header=False, access_log=settings.access_log,
        log_level="info",
    )  # fmt: skip
    return 0


def _keys(args: argparse.Namespace) -> int:
    settings = KeyStoreSettings()
    dsn, schema = settings.postgres_dsn.get_secret_value(), settings.postgres_schema
    if args.keys_command == "create":
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        print(create_key(dsn, name=args.name, scopes=scopes, schema=schema))
        return 0
    if args.keys_command == "list":
        for key in list_keys(dsn, schema=schema):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            print(f"{key.key_id}  {','.join(sorted(key.scopes)):<18} {state:<24} {key.name}")
        return 0
    if not revoke_key(dsn, args.key_id, schema=schema):
        print(f"error: no active key {args.key_id}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
