"""What one rebuild is asked to do, the names it uses, what it reports, how it fails."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from turnlog.streams.checksum import TableDigest
from turnlog.streams.errors import StreamsError

PG_NAME_LIMIT: Final = 63
"""PostgreSQL truncates longer identifiers."""


class RebuildError(StreamsError):
    """The rebuild stopped on the way; `exit_code` 4. Unless the message says otherwise,
    what it created is dropped and the live projections are untouched."""

    exit_code = 4


class RebuildRefusedError(RebuildError):
    """The rebuild cannot start (service down, chDB folder owned, live schema missing);
    nothing was created."""

    exit_code = 3


class Target(enum.StrEnum):
    POSTGRES = "postgres"
    CLICKHOUSE = "clickhouse"
    BOTH = "both"

    @property
    def postgres(self) -> bool:
        return self is not Target.CLICKHOUSE

    @property
    def clickhouse(self) -> bool:
        return self is not Target.POSTGRES


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True, slots=True)
class RebuildOptions:
    target: Target = Target.BOTH
    dry_run: bool = False
    """Rebuild and compare checksums with live, no swap; the rebuild is dropped."""
    keep_old: bool = True
    """Keep the swapped-out projections as `<schema>_old_<stamp>`, `<db>_old_<stamp>`."""
    batch_size: int = 10_000
    """Events per batch: ClickHouse wants large ones (~0.1 s fixed cost per insert)."""
    settle_seconds: float = 10.0
    """Under the lock: how long the live ClickHouse positions may stay behind the live
    PostgreSQL offsets without moving before the worker's last ClickHouse write counts as
    failed (the worker then writes it again, into the rebuilt tables, after the swap)."""
    stamp: str = field(default_factory=utc_stamp)


@dataclass(frozen=True, slots=True)
class Names:
    """The schemas and databases of one rebuild."""

    schema: str
    database: str
    stamp: str

    @property
    def rebuilt_schema(self) -> str:
        return f"{self.schema}_rebuild_{self.stamp}"

    @property
    def old_schema(self) -> str:
        return f"{self.schema}_old_{self.stamp}"

    @property
    def rebuilt_database(self) -> str:
        return f"{self.database}_rebuild_{self.stamp}"

    @property
    def old_database(self) -> str:
        return f"{self.database}_old_{self.stamp}"

    def check(self) -> None:
        if len(self.rebuilt_schema) > PG_NAME_LIMIT:
            raise RebuildRefusedError(
                f"schema name {self.schema!r} is too long for {self.rebuilt_schema!r} "
                f"(PostgreSQL allows {PG_NAME_LIMIT} characters)"
            )


@dataclass(slots=True)
class RebuildReport:
    names: Names
    target: Target
    replayed: int = 0
    """Records read and processed (replay and catch-up)."""
    caught_up_locked: int = 0
    """Of those, records processed under the exclusive lock."""
    dead_letters: int = 0
    """Records the processor rejected (counted, not sent again)."""
    seconds: float = 0.0
    lock_seconds: float = 0.0
    """How long live processing was paused."""
    swapped: bool = False
    swapped_at: float | None = None
    """When the swap committed (seconds since the epoch)."""
    comparison: list[TableDigest] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """The swapped-out projections, when kept."""
