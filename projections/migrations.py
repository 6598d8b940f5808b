"""A small versioned migration runner, one contract for PostgreSQL and ClickHouse.

Migrations are files named ``NNNN_name.sql`` in a package folder. Each target records
what it applied (version, name, checksum); re-running applies nothing, and a file that
changed after it was applied is refused by name, so history cannot drift silently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A migration folder or an applied history that cannot be reconciled."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """The statements of the file; each ends with ``;`` at the end of a line."""
        statements: list[str] = []
        current: list[str] = []
        for line in self.sql.splitlines():
            if line.strip().startswith("--") and not current:
                continue
            current.append(line)
            if line.rstrip().endswith(";"):
                statement = "\n".join(current).strip().rstrip(";").strip()
                if statement:
                    statements.append(statement)
                current = []
        if "\n".join(current).strip():
            raise MigrationError(
                f"migration {self.version:04d}_{self.name}: the last statement has no ';'"
            )
        return statements


def load_migrations(folder: Path) -> list[Migration]:
    """Every ``NNNN_name.sql`` of ``folder``, ordered by version."""
    migrations: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(f"{path}: version {version:04d} is used twice")
        migrations[version] = Migration(version, match["name"], path.read_text())
    return [migrations[v] for v in sorted(migrations)]


class MigrationTarget(Protocol):
    def applied(self) -> dict[int, str]:
        """Version -> checksum of what this target has applied."""
        ...

    def apply(self, migration: Migration) -> bool:
        """Apply one migration and record it; False when another migrator already had."""
        ...


def pending(applied: dict[int, str], migrations: Sequence[Migration]) -> list[Migration]:
    """What is left to apply; refuses changed or unknown history."""
    known = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the target has migration {version:04d} applied, which no file provides "
                "(is this code older than the database?)"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{migration.name} changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )
    return [m for m in migrations if m.version not in applied]


def migrate(target: MigrationTarget, migrations: Iterable[Migration]) -> list[Migration]:
    """Apply what is pending, in order; return what this call applied (empty: a no-op)."""
    todo = pending(target.applied(), list(migrations))
    return [migration for migration in todo if target.apply(migration)]
