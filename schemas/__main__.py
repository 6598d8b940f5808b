"""`python -m turnlog.schemas export|check`: write or verify the checked-in JSON Schemas."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from turnlog.schemas.errors import IncompatibleSchemaError
from turnlog.schemas.export import BUMP_THE_MAJOR, JSONSCHEMA_DIR, export_schemas, find_stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m turnlog.schemas", description=__doc__)
    parser.add_argument("command", choices=("export", "check"))
    parser.add_argument(
        "--dir", type=Path, default=JSONSCHEMA_DIR, help="schema folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = find_stale(args.dir)
        for problem in problems:
            print(f"{args.dir / problem}", file=sys.stderr)
        if problems:
            print(
                "JSON Schemas are not current: run `python -m turnlog.schemas export`",
                file=sys.stderr,
            )
            return 1
        print(f"JSON Schemas in {args.dir} are current")
        return 0
    try:
        written = export_schemas(args.dir)
    except IncompatibleSchemaError as error:
        for problem in error.problems:
            print(f"incompatible: {problem}", file=sys.stderr)
        print(f"refusing to export: {BUMP_THE_MAJOR}", file=sys.stderr)
        return 1
    for name in written:
        print(f"wrote {args.dir / name}")
    print(f"{len(written)} file(s) written, the others were current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
