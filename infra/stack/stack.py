"""The local stack as one unit: start, provision, report, stop. Every step is idempotent.

The ClickHouse DDL runs in a child process, because one process owns a chDB folder for its
lifetime. When a running ClickHouse projector owns the folder, `up` skips the DDL: the
projector applied it itself when it started. A projector that starts while the DDL child
holds the folder waits for it (its store open is retried), so neither fails.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from turnlog.agent_gateway.config import default_kek_public_key
from turnlog.infra.stack.components import Component, ComponentStatus
from turnlog.infra.stack.config import DEFAULT_STATE_DIR, StackSettings
from turnlog.infra.stack.errors import ComponentFailedError
from turnlog.infra.stack.kafka import Kafka
from turnlog.infra.stack.keys import ensure_kek
from turnlog.infra.stack.livekit import LiveKit
from turnlog.infra.stack.postgres import Postgres
from turnlog.infra.stack.services import NAME_WIDTH
from turnlog.infra.stack.topics import ensure_topics
from turnlog.projections.clickhouse.store import chdb_owner
from turnlog.projections.migrations import Migration
from turnlog.projections.postgres.migrate import migrate_postgres

Report = Callable[[str], None]


@dataclass
class StartReport:
    seconds: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.kafka = Kafka(settings)
        self.postgres = Postgres(settings)
        self.livekit = LiveKit(settings)
        self.components: list[Component] = [self.kafka, self.postgres, self.livekit]

    def up(self, report: Report = print) -> StartReport:
        """Start what is not running, then provision topics and schemas."""
        result = StartReport()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(self.components)) as pool:
            futures = {c.name: pool.submit(c.start) for c in self.components}
            for name, future in futures.items():
                summary = future.result()
                report(f"{name:<{NAME_WIDTH}} {summary}")
        result.seconds["services ready"] = time.monotonic() - started

        step = time.monotonic()
        changes = asyncio.run(
            ensure_topics(self.settings.kafka_bootstrap, self.settings.topic_specs())
        )
        report(f"{'topics':<{NAME_WIDTH}} " + ("; ".join(changes) if changes else "up to date"))
        result.seconds["topics"] = time.monotonic() - step

        default_stack = self.settings.state_dir.resolve() == DEFAULT_STATE_DIR.resolve()
        report(f"{'keys':<{NAME_WIDTH}} " + ensure_kek(
            self.settings.state_dir, share_with=default_kek_public_key() if default_stack else None
        ))  # fmt: skip

        step = time.monotonic()
        applied = migrate_postgres(self.settings.postgres_dsn)
        report(f"{'postgres':<{NAME_WIDTH}} migrations: " + _describe(applied))
        result.seconds["postgres migrations"] = time.monotonic() - step

        step = time.monotonic()
        report(f"{'clickhouse':<{NAME_WIDTH}} {self.migrate_clickhouse()}")
        result.seconds["clickhouse ddl"] = time.monotonic() - step
        return result

    def migrate_clickhouse(self) -> str:
        """Apply the analytics DDL in a child process (it must not make us the chDB owner),
        or skip it when a running projector owns the folder; returns a one-line summary."""
        argv = [
            sys.executable,
            "-m",
            "turnlog.projections.clickhouse",
            "migrate",
            "--url",
            self.settings.analytics_url,
            "--database",
            self.settings.clickhouse_database,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return result.stdout.strip()
        if result.returncode == 3:  # folder owned by a running service; it migrates itself
            owner = chdb_owner(self.settings.state_dir / "clickhouse")
            return (f"owned by a running process (pid {owner}); DDL skipped: the ClickHouse "
                    "projector applies it when it starts")  # fmt: skip
        raise ComponentFailedError(f"ClickHouse DDL failed:\n{result.stderr[-2000:]}")

    def status(self) -> list[ComponentStatus]:
        statuses = [c.status() for c in self.components]
        statuses.append(self._clickhouse_status())
        return statuses

    def _clickhouse_status(self) -> ComponentStatus:
        url = self.settings.analytics_url
        if not url.startswith("chdb://"):
            return ComponentStatus("clickhouse", True, url, detail="server (not managed here)")
        path = self.settings.state_dir / "clickhouse"
        owner = chdb_owner(path)
        detail = "embedded chDB, " + (f"owned by pid {owner}" if owner else "no owner now")
        return ComponentStatus("clickhouse", (path / "metadata").is_dir(), url, owner, detail)

    def down(self, report: Report = print) -> None:
        with ThreadPoolExecutor(max_workers=len(self.components)) as pool:
            futures = {c.name: pool.submit(c.stop) for c in self.components}
            for name, future in futures.items():
                report(f"{name:<{NAME_WIDTH}} {future.result()}")

    def is_up(self) -> bool:
        """Whether the data services run (Kafka, PostgreSQL). LiveKit holds no data and
        `up` starts it whenever it is down, so a stack without it still counts as up."""
        return self.kafka.status().running and self.postgres.status().running

    def status_json(self) -> str:
        return json.dumps([s.__dict__ for s in self.status()], indent=2)


def _describe(applied: list[Migration]) -> str:
    if not applied:
        return "up to date"
    return "applied " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
