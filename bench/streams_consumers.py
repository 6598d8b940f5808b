"""The consumers the streams benchmark compares, each a process of its own with its own
PostgreSQL schema, chDB folder, consumer group and batch setting:

- `worker`: the streams worker as shipped, `python -m turnlog.streams worker` (the batch engine);
- `faust`: the same worker on its Faust engine (`TURNLOG_STREAMS_ENGINE=faust`, a Faust
  agent over `stream.take_events`);
- `baseline`: `python -m bench.streams_baseline`, a plain aiokafka loop around the same
  processor and sinks, batching greedily (what has been fetched, up to the batch size);
- `take`: the same loop batching as `take_events` does (wait for a full batch, up to the
  batch wait).

Both are configured only through the environment (`TURNLOG_*`), as in production, and
measured from outside: pollers read what each sink has committed (`streams_measure`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from bench.streams_measure import Offsets, Poller
from turnlog.projections.clickhouse.query_endpoint import open_reader
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.schemas import EVENTS_TOPIC

DATABASE = "turnlog"
REPO = Path(__file__).resolve().parents[1]
WORKER = [sys.executable, "-m", "turnlog.streams", "worker", "-l", "warning"]
BASELINE = [sys.executable, "-m", "bench.streams_baseline"]
COMMANDS = {"worker": WORKER, "faust": WORKER, "baseline": BASELINE, "take": BASELINE}
ENGINES = {"worker": "batch", "faust": "faust"}
TAKES = {"baseline": "greedy", "take": "take"}
"""`TURNLOG_BENCH_TAKE` of the baseline loop (see `streams_baseline`)."""


@dataclass(frozen=True)
class BatchSetting:
    """At most `size` events a batch; `within`: the wait (see `streams.config`)."""

    size: int
    within: float

    def __str__(self) -> str:
        return f"{self.size} / {self.within:g}s"

    @classmethod
    def parse(cls, text: str) -> BatchSetting:
        """`1000x0.2`: at most 1000 events, waiting at most 0.2 s."""
        size, within = text.lower().split("x")
        return cls(int(size), float(within))


@dataclass
class ConsumerRun:
    """One consumer process on one topic set, with sinks of its own."""

    kind: str
    setting: BatchSetting
    prefix: str
    name: str
    scratch: Path
    bootstrap: str
    dsn: str

    def __post_init__(self) -> None:
        self.schema = f"bench_{self.name}".replace("-", "_")
        self.folder = self.scratch / self.name / "clickhouse"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def topic(self) -> str:
        return self.prefix + EVENTS_TOPIC

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TURNLOG_KAFKA_BOOTSTRAP": self.bootstrap,
            "TURNLOG_TOPIC_PREFIX": self.prefix,
            "TURNLOG_POSTGRES_DSN": self.dsn,
            "TURNLOG_POSTGRES_SCHEMA": self.schema,
            "TURNLOG_CLICKHOUSE_URL": f"chdb://{self.folder}",
            "TURNLOG_CLICKHOUSE_DATABASE": DATABASE,
            "TURNLOG_STREAMS_CONSUMER_GROUP": f"bench-{self.name}",
            "TURNLOG_STREAMS_BATCH_SIZE": str(self.setting.size),
            "TURNLOG_STREAMS_BATCH_WITHIN": str(self.setting.within),
            "TURNLOG_STREAMS_METRICS_PORT": "0",
            "TURNLOG_STREAMS_QUERY_PORT": "0",
            "TURNLOG_STREAMS_DATA_DIR": str(self.scratch / self.name / "data"),
            "TURNLOG_STREAMS_ENGINE": ENGINES.get(self.kind, "batch"),
            "TURNLOG_BENCH_TAKE": TAKES.get(self.kind, "greedy"),
        }

    def start(self) -> None:
        migrate_postgres(self.dsn, schema=self.schema)
        (self.scratch / self.name).mkdir(parents=True, exist_ok=True)
        self._log = (self.scratch / self.name / "consumer.log").open("wb")
        self.process = subprocess.Popen(
            COMMANDS[self.kind], env=self.env(), cwd=REPO, stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        path = self.scratch / self.name / "consumer.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))  # fmt: skip

    def pollers(self) -> tuple[Poller, Poller]:
        """Visibility in PostgreSQL (every 50 ms) and ClickHouse (every 100 ms)."""
        return (Poller("postgres", PostgresOffsets(self), 0.05),
                Poller("clickhouse", ClickHousePositions(self), 0.1))  # fmt: skip


class PostgresOffsets:
    """The consumer's committed offsets, on a connection of the poller's thread."""

    def __init__(self, run: ConsumerRun) -> None:
        self.run = run
        self._conn: psycopg.Connection[Any] | None = None
        self._query = sql.SQL(
            "SELECT partition, next_offset FROM {} WHERE consumer = %s AND topic = %s"
        ).format(sql.Identifier(run.schema, "consumer_offsets"))

    def __call__(self) -> Offsets:
        if self._conn is None:
            self._conn = psycopg.connect(self.run.dsn, autocommit=True)
        rows = self._conn.execute(self._query, (f"bench-{self.run.name}", self.run.topic))
        return {int(p): int(o) for p, o in rows.fetchall()}


class ClickHousePositions:
    """The ClickHouse writer's positions, read through the consumer's query endpoint (it
    owns its chDB folder; this process must not open it)."""

    def __init__(self, run: ConsumerRun) -> None:
        self.run = run
        self._store: AnalyticsStore | None = None

    def __call__(self) -> Offsets:
        if self._store is None:
            self._store = open_reader(f"chdb://{self.run.folder}")
        rows = self._store.query(
            f"SELECT partition, max(next_offset) FROM `{DATABASE}`.positions "
            "WHERE topic = {topic:String} GROUP BY partition",
            parameters={"topic": self.run.topic},
        )
        return {int(p): int(o) for p, o in rows}


def wait_for(condition: Any, *, timeout: float, run: ConsumerRun, what: str) -> None:
    """Until `condition()`, or fail naming `what` (with the consumer's log when it died)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not run.alive():
            raise RuntimeError(f"the {run.kind} consumer exited:\n{run.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s ({run.kind}, {run.setting})")
        time.sleep(0.05)
