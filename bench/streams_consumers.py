"""The consumers the streams benchmark compares, each with its own PostgreSQL schema, chDB
folder, consumer groups and batch setting, configured only through the environment
(`TURNLOG_*`, as in production) and measured from outside (`streams_measure`):

- `v2`: the streams worker, one process per projection (`python -m turnlog.streams worker
  --projection postgres`, `... clickhouse`, `... derived`; `--projections` picks which);
- `v1`: the worker as it was (one aiokafka loop writing PostgreSQL, then ClickHouse,
  then deriving records by reading PostgreSQL back: `bench/streams_baseline.py` of
  commit `V1_COMMIT`), run from a git worktree of that commit so `turnlog` is its code;
  its schema and chDB folder are fresh and migrated by that code;
- `minimal`: the hand-tuned floor, `python -m bench.streams_minimal` (see there what it
  leaves out).

What each shows: PostgreSQL's `consumer_offsets` (committed with the rows), ClickHouse's
`positions` (through the owner's query endpoint), and for v2's derived projection the
group's committed offsets in Kafka (committed in its transaction).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import psycopg
from aiokafka.admin import AIOKafkaAdminClient
from psycopg import sql

from bench.streams_measure import Offsets, Poller
from turnlog.projections.clickhouse.query_endpoint import open_reader
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.schemas import EVENTS_TOPIC

DATABASE: Final = "turnlog"
REPO: Final = Path(__file__).resolve().parents[1]
V1_COMMIT: Final = "829c66f"
"""The last commit of the v1 worker (`streams/processor.py`, `BatchProcessor`)."""
V1_WORKTREE: Final = Path("/tmp/turnlog-v1")
KINDS: Final = ("v2", "v1", "minimal")
V2_PROJECTIONS: Final = ("postgres", "clickhouse", "derived")


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


@dataclass(frozen=True)
class Process:
    """One process of a consumer: its command, working folder and `turnlog` source."""

    role: str
    command: list[str]
    cwd: Path


def processes(kind: str, *, projections: Sequence[str], worktree: Path) -> list[Process]:
    """The processes of consumer `kind`."""
    python = sys.executable
    if kind == "v2":
        return [Process(p, [python, "-m", "turnlog.streams", "worker", "--projection", p,
                            "-l", "warning"], REPO) for p in projections]  # fmt: skip
    if kind == "v1":
        return [Process("v1", [python, "-m", "bench.streams_baseline"], worktree)]
    if kind == "minimal":
        return [Process("minimal", [python, "-m", "bench.streams_minimal"], REPO)]
    raise ValueError(f"unknown consumer {kind!r}; choose from {', '.join(KINDS)}")


def offsets_consumer(kind: str, group: str) -> str:
    """The `consumer` under which `kind` stores its PostgreSQL offsets."""
    return {"v2": f"{group}-postgres", "v1": group, "minimal": f"{group}-minimal"}[kind]


def ensure_worktree(path: Path = V1_WORKTREE) -> Path:
    """A git worktree of `V1_COMMIT` at `path` (made once), checked to import its own code."""
    if not (path / "streams" / "processor.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), V1_COMMIT],
                       cwd=REPO, check=True, capture_output=True)  # fmt: skip
    found = subprocess.run(
        [sys.executable, "-c", "import turnlog.streams.processor as p; print(p.__file__)"],
        cwd=path, env={**os.environ, "PYTHONPATH": str(path)}, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if not found.startswith(str(path)):
        raise RuntimeError(f"the v1 worktree imports turnlog from {found}, not {path}")
    return path


@dataclass
class ConsumerRun:
    """One consumer (one or more processes) on one topic set, with sinks of its own."""

    kind: str
    setting: BatchSetting
    prefix: str
    name: str
    scratch: Path
    bootstrap: str
    dsn: str
    projections: tuple[str, ...] = V2_PROJECTIONS
    worktree: Path = V1_WORKTREE
    _running: list[tuple[Process, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.schema = f"bench_{self.name}".replace("-", "_")
        self.folder = self.scratch / self.name / "clickhouse"
        self.group = f"bench-{self.name}"
        self.processes = processes(self.kind, projections=self.projections,
                                   worktree=self.worktree)  # fmt: skip

    @property
    def topic(self) -> str:
        return self.prefix + EVENTS_TOPIC

    @property
    def sinks(self) -> tuple[str, ...]:
        """What can be polled: postgres, clickhouse, derived."""
        if self.kind == "v2":
            return tuple(p for p in V2_PROJECTIONS if p in self.projections)
        return ("postgres", "clickhouse")

    def env(self, process: Process) -> dict[str, str]:
        home = self.scratch / self.name / process.role
        return {
            **os.environ,
            "PYTHONPATH": str(process.cwd),
            "TURNLOG_KAFKA_BOOTSTRAP": self.bootstrap,
            "TURNLOG_TOPIC_PREFIX": self.prefix,
            "TURNLOG_POSTGRES_DSN": self.dsn,
            "TURNLOG_POSTGRES_SCHEMA": self.schema,
            "TURNLOG_CLICKHOUSE_URL": f"chdb://{self.folder}",
            "TURNLOG_CLICKHOUSE_DATABASE": DATABASE,
            "TURNLOG_STREAMS_CONSUMER_GROUP": self.group,
            "TURNLOG_STREAMS_BATCH_SIZE": str(self.setting.size),
            "TURNLOG_STREAMS_BATCH_WITHIN": str(self.setting.within),
            "TURNLOG_STREAMS_METRICS_PORT": "0",
            "TURNLOG_STREAMS_QUERY_PORT": "0",
            "TURNLOG_STREAMS_DATA_DIR": str(home / "data"),
            "TURNLOG_STREAMS_ENGINE": "batch",  # v1's setting; v2 ignores it
            "TURNLOG_BENCH_TAKE": "greedy",  # v1's baseline loop batches greedily
        }

    def migrate(self) -> None:
        """The schema, by the code of the consumer that uses it (the minimal makes its own)."""
        if self.kind == "v2":
            migrate_postgres(self.dsn, schema=self.schema)
        elif self.kind == "v1":
            code = ("import os; from turnlog.projections.postgres.migrate import "
                    "migrate_postgres; migrate_postgres(os.environ['TURNLOG_POSTGRES_DSN'], "
                    "schema=os.environ['TURNLOG_POSTGRES_SCHEMA'])")  # fmt: skip
            process = self.processes[0]
            subprocess.run([sys.executable, "-c", code], cwd=process.cwd, env=self.env(process),
                           check=True, capture_output=True)  # fmt: skip

    def start(self) -> None:
        self.migrate()
        for process in self.processes:
            home = self.scratch / self.name / process.role
            home.mkdir(parents=True, exist_ok=True)
            log = (home / "consumer.log").open("wb")
            popen = subprocess.Popen(process.command, env=self.env(process), cwd=process.cwd,
                                     stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
            self._running.append((process, popen, log))

    def alive(self) -> bool:
        return bool(self._running) and all(p.poll() is None for _, p, _ in self._running)

    def log_tail(self, lines: int = 15) -> str:
        tails = []
        for process, popen, _ in self._running:
            path = self.scratch / self.name / process.role / "consumer.log"
            text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            tails.append(f"[{process.role}, exit {popen.poll()}]\n{text}")
        return "\n".join(tails)

    def stop(self) -> None:
        for _, popen, _ in self._running:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for _, popen, log in self._running:
            try:
                popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
            log.close()
        self._running.clear()

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))  # fmt: skip

    def pollers(self) -> dict[str, Poller]:
        """Visibility per sink: PostgreSQL every 50 ms, ClickHouse every 100 ms, the
        derived projection's Kafka offsets every 200 ms."""
        readers: dict[str, tuple[Any, float]] = {
            "postgres": (PostgresOffsets(self), 0.05),
            "clickhouse": (ClickHousePositions(self), 0.1),
            "derived": (KafkaGroupOffsets(self), 0.2),
        }
        return {sink: Poller(sink, *readers[sink]) for sink in self.sinks}


class PostgresOffsets:
    """The consumer's committed offsets, on a connection of the poller's thread."""

    def __init__(self, run: ConsumerRun) -> None:
        self.run = run
        self.consumer = offsets_consumer(run.kind, run.group)
        self._conn: psycopg.Connection[Any] | None = None
        self._query = sql.SQL(
            "SELECT partition, next_offset FROM {} WHERE consumer = %s AND topic = %s"
        ).format(sql.Identifier(run.schema, "consumer_offsets"))

    def __call__(self) -> Offsets:
        if self._conn is None:
            self._conn = psycopg.connect(self.run.dsn, autocommit=True)
        rows = self._conn.execute(self._query, (self.consumer, self.run.topic))
        return {int(p): int(o) for p, o in rows.fetchall()}


class ClickHousePositions:
    """The ClickHouse writer's positions, read through the owner's query endpoint (it
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


class KafkaGroupOffsets:
    """The derived projection group's committed offsets (committed in its transaction),
    through an admin client on an event loop of the poller's thread."""

    def __init__(self, run: ConsumerRun) -> None:
        self.run = run
        self.group = f"{run.group}-derived"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._admin: AIOKafkaAdminClient | None = None

    def __call__(self) -> Offsets:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._read())

    async def _read(self) -> Offsets:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.run.bootstrap)
            await admin.start()
            self._admin = admin
        committed = await self._admin.list_consumer_group_offsets(self.group)
        return {tp.partition: int(meta.offset) for tp, meta in committed.items()
                if tp.topic == self.run.topic and meta.offset >= 0}  # fmt: skip

    def close(self) -> None:
        if self._loop is not None:
            if self._admin is not None:
                self._loop.run_until_complete(self._admin.close())
            self._loop.close()


def wait_for(condition: Any, *, timeout: float, run: ConsumerRun, what: str) -> None:
    """Until `condition()`, or fail naming `what` (with the consumer's log when one of its
    processes died)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not run.alive():
            raise RuntimeError(f"the {run.kind} consumer exited:\n{run.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s ({run.kind}, {run.setting})")
        time.sleep(0.05)
