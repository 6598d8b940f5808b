"""`python -m turnlog.streams worker`; see `streams.cli`."""

from __future__ import annotations

from turnlog.streams.cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m turnlog.streams")
