"""``python -m projections.clickhouse migrate --url URL --database DB``.

Exit codes: 0 applied or up to date; 3 the chDB folder is owned by a running process
(which applies migrations itself when it opens the store); 1 any other failure.
"""

from __future__ import annotations

import argparse
import sys

from projections.clickhouse.migrate import migrate_clickhouse
from projections.clickhouse.store import StoreLockedError, connect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projections.clickhouse")
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="apply the analytics DDL")
    mig.add_argument("--url", required=True, help="chdb:///path or http(s)://host:port")
    mig.add_argument("--database", default="turnlog")
    args = parser.parse_args(argv)

    try:
        store = connect(args.url)
    except StoreLockedError as exc:
        print(f"not migrated here: {exc}", file=sys.stderr)
        return 3
    applied = migrate_clickhouse(store, database=args.database)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
    print(f"migrations ({store.url}): " + (f"applied {names}" if applied else "up to date"))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
