"""Our services on the local stack: one streams worker per projection (PostgreSQL,
ClickHouse, derived topics), the API, the agent gateway.

Each runs under its own supervisor (`turnlog.infra.supervise`, detached: it outlives the
launcher), which restarts it after a crash with a growing pause and records the restarts
in `<state>/run/<name>.state.json`. Each writes its own log file under `<state>/logs/`,
keeps its supervisor's pid in `<state>/run/`, and is health-checked before it counts as
started: a streams worker when its metrics endpoint answers (it serves it once its sinks
are open and its topics verified), the API when `/readyz` answers 200, the agent gateway
when its health endpoint answers and it has registered with the LiveKit server. Every
setting reaches the services as the environment variables they read, derived from the
launcher's settings, so the services and the stack always agree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from turnlog.infra import supervise
from turnlog.infra.stack.components import ComponentStatus
from turnlog.infra.stack.config import REPO_ROOT, StackSettings
from turnlog.infra.stack.errors import ComponentFailedError
from turnlog.infra.stack.keys import ensure_kek, kek_paths
from turnlog.infra.stack.process import (
    PidFile,
    ensure_port_free,
    pid_alive,
    spawn_detached,
    stop_pid,
    wait_until,
)

SERVICE_START_TIMEOUT: Final = 120.0
"""Seconds a service may take to become healthy (the first start compiles bytecode)."""
GATEWAY_REGISTERED: Final = b'"registered worker"'
"""What livekit-agents logs once the worker is registered with the LiveKit server."""
NAME_WIDTH: Final = len("streams-clickhouse")
"""Width of the name column in what `up`, `down` and `status` print."""
PROJECTIONS: Final = ("postgres", "clickhouse", "derived")
"""The streams worker's projections, one service each."""


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def service_environment(
    settings: StackSettings, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables every service reads, from the launcher's settings."""
    s = settings
    env = {
        "TURNLOG_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "TURNLOG_TOPIC_PREFIX": s.topic_prefix,
        "TURNLOG_POSTGRES_DSN": s.postgres_dsn,
        "TURNLOG_CLICKHOUSE_URL": s.analytics_url,
        "TURNLOG_CLICKHOUSE_DATABASE": s.clickhouse_database,
        "LIVEKIT_URL": s.livekit_url,
        "LIVEKIT_API_KEY": s.livekit_api_key,
        "LIVEKIT_API_SECRET": s.livekit_api_secret,
        # streams worker
        "TURNLOG_STREAMS_METRICS_HOST": s.host,
        "TURNLOG_STREAMS_METRICS_PORT": str(s.streams_metrics_port),
        "TURNLOG_STREAMS_DATA_DIR": str(s.state_dir / "streams"),
        # API
        "TURNLOG_API_HOST": s.host,
        "TURNLOG_API_PORT": str(s.api_port),
        # agent gateway
        "TURNLOG_GATEWAY_METRICS_HOST": s.host,
        "TURNLOG_GATEWAY_METRICS_PORT": str(s.gateway_metrics_port),
        "TURNLOG_GATEWAY_HEALTH_HOST": s.host,
        "TURNLOG_GATEWAY_HEALTH_PORT": str(s.gateway_health_port),
        # the whole platform shares this machine: load by calls, not by CPU use (the
        # LiveKit server offers no job to a worker whose reported load is at 0.7)
        "TURNLOG_GATEWAY_MAX_JOBS": "4",
        "TURNLOG_GATEWAY_METRICS_DIR": str(s.state_dir / "gateway-metrics"),
        "TURNLOG_SPOOL_DIR": str(s.state_dir / "spool"),
        # the key store's KEK: agents seal with the public half, the API opens with both
        "TURNLOG_KEK_PUBLIC_KEY": str(kek_paths(s.state_dir)[1]),
        "TURNLOG_KEK_PRIVATE_KEY": str(kek_paths(s.state_dir)[0]),
        # the agent is the tutor example, which lives in the repository, not the package
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    return {**env, **provider_choice(os.environ), **(extra or {})}


def provider_choice(environ: Mapping[str, str]) -> dict[str, str]:
    """Offline providers, unless a cloud key is set: `OPENAI_API_KEY` picks OpenAI for the
    LLM, TTS and STT, `DEEPGRAM_API_KEY` Deepgram for the STT. `TURNLOG_STT`, `TURNLOG_LLM`
    and `TURNLOG_TTS` set by hand win."""
    choice = {"TURNLOG_STT": "offline", "TURNLOG_LLM": "offline", "TURNLOG_TTS": "offline"}
    if environ.get("OPENAI_API_KEY", "").strip():
        choice = dict.fromkeys(choice, "openai")
    if environ.get("DEEPGRAM_API_KEY", "").strip():
        choice["TURNLOG_STT"] = "deepgram"
    return {name: environ.get(name) or value for name, value in choice.items()}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]
    port: int
    """The port its health check uses (refused at start when something else holds it)."""
    port_setting: str
    health_url: str
    """Answers 200 once the service is up."""
    address: str
    """What `status` shows: the service's main URL."""
    ready_line: bytes | None = None
    """Also required in its log, after the start, before it counts as started."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables of this service alone, over the shared ones."""


def streams_spec(settings: StackSettings, projection: str) -> ServiceSpec:
    """The streams worker of one projection: its own process, metrics port and log."""
    s = settings
    port, setting = {
        "postgres": (s.streams_metrics_port, "TURNLOG_STREAMS_METRICS_PORT"),
        "clickhouse": (s.streams_clickhouse_metrics_port,
                       "TURNLOG_STREAMS_CLICKHOUSE_METRICS_PORT"),
        "derived": (s.streams_derived_metrics_port, "TURNLOG_STREAMS_DERIVED_METRICS_PORT"),
    }[projection]  # fmt: skip
    # its own data folder too: three workers of one app id must not share local state
    env = {"TURNLOG_STREAMS_METRICS_PORT": str(port),
           "TURNLOG_STREAMS_DATA_DIR": str(s.state_dir / "streams" / projection)}  # fmt: skip
    if projection == "clickhouse":  # it owns the chDB folder, so it serves the queries
        env["TURNLOG_STREAMS_QUERY_PORT"] = str(s.streams_query_port)
    metrics = f"http://{s.host}:{port}/metrics"
    argv: tuple[str, ...] = (sys.executable, "-m", "turnlog.streams", "worker",
                             "--projection", projection)  # fmt: skip
    if projection == "postgres":  # the key store is a few PostgreSQL rows: same process
        argv += ("--projection", "keys")
    return ServiceSpec(f"streams-{projection}", argv, port, setting, metrics, metrics, env=env)


def service_specs(settings: StackSettings) -> list[ServiceSpec]:
    """The services, in start order."""
    s, py = settings, sys.executable
    return [
        *(streams_spec(s, projection) for projection in PROJECTIONS),
        ServiceSpec("api", (py, "-m", "turnlog.api"), s.api_port, "TURNLOG_API_PORT",
                    f"{s.api_url}/readyz", s.api_url),
        ServiceSpec("gateway", (py, "-m", "examples.tutor", "start"), s.gateway_health_port,
                    "TURNLOG_GATEWAY_HEALTH_PORT", f"http://{s.host}:{s.gateway_health_port}/",
                    f"http://{s.host}:{s.gateway_metrics_port}/metrics", GATEWAY_REGISTERED),
    ]  # fmt: skip


@dataclass(frozen=True)
class Supervision:
    """How a service's supervisor restarts and stops it (see `turnlog.infra.supervise`)."""

    first_pause: float = supervise.FIRST_PAUSE
    max_pause: float = supervise.MAX_PAUSE
    jitter: float = supervise.JITTER
    healthy_after: float = supervise.HEALTHY_AFTER
    stop_timeout: float = supervise.STOP_TIMEOUT
    """Seconds the service has to exit on SIGTERM before its supervisor kills it."""

    def argv(self, name: str, state: Path, command: tuple[str, ...]) -> tuple[str, ...]:
        return (
            sys.executable, "-m", "turnlog.infra.supervise", "--name", name,
            "--state", str(state), "--first-pause", str(self.first_pause),
            "--max-pause", str(self.max_pause), "--jitter", str(self.jitter),
            "--healthy-after", str(self.healthy_after),
            "--stop-timeout", str(self.stop_timeout), "--", *command,
        )  # fmt: skip


class Service:
    """One supervised service process: start (health-checked), stop, status."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: StackSettings,
        env: Mapping[str, str],
        *,
        start_timeout: float = SERVICE_START_TIMEOUT,
        supervision: Supervision | None = None,
    ) -> None:
        self.spec = spec
        self.start_timeout = start_timeout
        self.supervision = supervision or Supervision()
        self.name = spec.name
        self.settings = settings
        self.env = {**env, **spec.env}
        self.log_path = settings.logs_dir / f"{spec.name}.log"
        self.pidfile = PidFile(settings.run_dir / f"{spec.name}.pid")
        """Holds the supervisor's pid: what `stop` signals."""
        self.state_path = settings.run_dir / f"{spec.name}.state.json"

    def supervisor_state(self) -> supervise.SupervisorState | None:
        return supervise.read_state(self.state_path)

    def healthy(self, log_offset: int | None = None) -> bool:
        """Its health URL answers 200 (and, from `log_offset` on, its log has the ready
        line, when it has one)."""
        if not http_ok(self.spec.health_url):
            return False
        if self.spec.ready_line is None or log_offset is None:
            return True
        return self._logged(self.spec.ready_line, log_offset)

    def _logged(self, line: bytes, offset: int) -> bool:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return line in log.read()
        except OSError:
            return False

    def start(self) -> str:
        running = self.pidfile.alive_pid()
        if running is not None:
            wait_until(
                self.healthy, timeout=self.start_timeout, what=self.name,
                log_path=self.log_path, alive=lambda: pid_alive(running), interval=0.2,
            )  # fmt: skip
            return f"already running (pid {running})"
        ensure_port_free(
            self.settings.host,
            self.spec.port,
            owner=f"the {self.name} service",
            setting=self.spec.port_setting,
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path.unlink(missing_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, **self.env}
        argv = self.supervision.argv(self.name, self.state_path, self.spec.argv)
        pid = spawn_detached(argv, log_path=self.log_path, env=env)
        self.pidfile.write(pid)
        try:
            waited = wait_until(
                lambda: self.healthy(offset), timeout=self.start_timeout, what=self.name,
                log_path=self.log_path, alive=lambda: self._first_run(pid), interval=0.2,
            )  # fmt: skip
        except ComponentFailedError:
            self.stop()
            raise
        return f"started (pid {pid}) in {waited:.1f} s, log {self.log_path}"

    def _first_run(self, pid: int) -> bool:
        """The supervisor runs and has not had to restart the service yet: an exit during
        start-up fails the start at once instead of being retried until the timeout."""
        state = self.supervisor_state()
        return pid_alive(pid) and (state is None or state.restarts == 0)

    def stop(self) -> str:
        pid = self.pidfile.alive_pid()
        if pid is None:
            self.pidfile.remove()
            return "not running"
        # the supervisor forwards SIGTERM and kills the service after its stop_timeout;
        # this wait covers that and a supervisor that hangs itself
        timeout = self.supervision.stop_timeout + 5
        clean = stop_pid(pid, timeout=timeout)
        if not clean:  # the supervisor was killed: its service may still run, in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.pidfile.remove()
        state = self.supervisor_state()
        if not clean:
            return f"killed after {timeout:.0f} s (its supervisor did not stop on SIGTERM)"
        if state is not None and state.killed_on_stop:
            return (f"killed after {self.supervision.stop_timeout:.0f} s "
                    "(it did not stop on SIGTERM)")  # fmt: skip
        return "stopped"

    def status(self) -> ComponentStatus:
        pid = self.pidfile.alive_pid()
        running = pid is not None and self.healthy()
        state = self.supervisor_state() if pid is not None else None
        detail = f"log {self.log_path}"
        if state is not None:
            detail = f"{state.describe()}; {detail}"
        return ComponentStatus(self.name, running, self.spec.address, pid, detail)


Report = Callable[[str], None]


class Services:
    """The services as one unit."""

    def __init__(self, settings: StackSettings, extra_env: Mapping[str, str] | None = None) -> None:
        env = service_environment(settings, extra_env)
        self.settings = settings
        self.services = [Service(spec, settings, env) for spec in service_specs(settings)]

    @property
    def logs_dir(self) -> Path:
        return self.settings.logs_dir

    def up(self, report: Report = print) -> None:
        """Start what is not running, all at once; fails when one does not get healthy."""
        ensure_kek(self.settings.state_dir)  # the agent seals with it, the API opens with it
        with ThreadPoolExecutor(max_workers=len(self.services)) as pool:
            futures = {s.name: pool.submit(s.start) for s in self.services}
            errors: list[str] = []
            for name, future in futures.items():
                try:
                    report(f"{name:<{NAME_WIDTH}} {future.result()}")
                except ComponentFailedError as error:
                    errors.append(f"{name}: {error}")
        if errors:
            raise ComponentFailedError("\n".join(errors))

    def down(self, report: Report = print) -> None:
        # the gateway first: its jobs flush their events while Kafka is still there
        for service in reversed(self.services):
            report(f"{service.name:<{NAME_WIDTH}} {service.stop()}")
        # the single streams worker of earlier versions, still running from before an upgrade
        legacy = PidFile(self.settings.run_dir / "streams.pid")
        if (pid := legacy.alive_pid()) is not None:
            clean = stop_pid(pid, timeout=30)
            legacy.remove()
            report(f"{'streams':<{NAME_WIDTH}} " + ("stopped" if clean else "killed after 30 s"))

    def status(self) -> list[ComponentStatus]:
        return [s.status() for s in self.services]
