"""`python -m streams worker`; see `streams.cli`."""

from __future__ import annotations

from streams.cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m streams")
