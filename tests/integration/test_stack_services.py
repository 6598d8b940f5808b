"""Service supervision: a detached process with its own log, healthy before it counts as
started, found again by its pid file, stopped; one that dies at start is named with its log;
the streams worker as three supervised services, one per projection."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_streams_support import StreamsEnv
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.errors import ComponentFailedError
from turnlog.infra.stack.process import pid_alive
from turnlog.infra.stack.services import (
    PROJECTIONS,
    Service,
    ServiceSpec,
    Supervision,
    service_environment,
    streams_spec,
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service(tmp_path: Path, argv: tuple[str, ...], port: int, **spec: object) -> Service:
    settings = StackSettings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    url = f"http://127.0.0.1:{port}/"
    return Service(
        ServiceSpec("probe", argv, port, "PROBE_PORT", url, url, **spec),  # type: ignore[arg-type]
        settings, {"PROBE": "1"}, start_timeout=20,
    )  # fmt: skip


def test_a_service_starts_healthy_is_found_again_and_stops(tmp_path: Path) -> None:
    port = free_port()
    probe = service(tmp_path, (sys.executable, "-m", "http.server", str(port),
                               "--bind", "127.0.0.1"), port)  # fmt: skip

    started = probe.start()
    try:
        pid = probe.pidfile.read()
        assert pid is not None
        assert started.startswith(f"started (pid {pid})")
        assert probe.status().running
        assert probe.start() == f"already running (pid {pid})"
    finally:
        assert probe.stop() == "stopped"
    assert not pid_alive(pid)
    assert not probe.status().running
    assert probe.stop() == "not running"
    assert probe.log_path == tmp_path / "state" / "logs" / "probe.log"


def test_a_service_that_dies_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    port = free_port()
    script = "import sys; print('cannot open the store'); sys.exit(3)"
    probe = service(tmp_path, (sys.executable, "-c", script), port)

    with pytest.raises(ComponentFailedError, match="probe exited during start-up") as info:
        probe.start()
    assert "cannot open the store" in str(info.value)
    assert probe.pidfile.read() is None


def test_a_ready_line_is_awaited_after_the_health_url(tmp_path: Path) -> None:
    port = free_port()
    script = (
        "import http.server as h, threading, time\n"
        f"server = h.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler)\n"
        "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
        "time.sleep(1.5); print('registered', flush=True); time.sleep(60)\n"
    )
    probe = service(tmp_path, (sys.executable, "-c", script), port, ready_line=b"registered")
    try:
        probe.start()
        assert "registered" in probe.log_path.read_text()
    finally:
        probe.stop()


def test_each_projection_runs_as_its_own_supervised_service(
    tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str
) -> None:
    """The three streams services on the real stack (their own topics, schema, groups and
    chDB folder): each healthy on its own metrics port in its own process; kill -9 of one
    is restarted by its supervisor and gets healthy again; all stop cleanly."""
    env = StreamsEnv(root=tmp_path / "streams", bootstrap=kafka_bootstrap, dsn=postgres_dsn)
    env.create()
    settings = StackSettings(
        state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", topic_prefix=env.prefix,
        streams_metrics_port=free_port(), streams_clickhouse_metrics_port=free_port(),
        streams_derived_metrics_port=free_port(), streams_query_port=free_port(),
    )  # fmt: skip
    extra = {"TURNLOG_POSTGRES_SCHEMA": env.schema, "TURNLOG_STREAMS_CONSUMER_GROUP": env.group}
    shared = service_environment(settings, extra)
    services = [Service(streams_spec(settings, p), settings, shared, start_timeout=90,
                        supervision=Supervision(first_pause=0.5, stop_timeout=20))
                for p in PROJECTIONS]  # fmt: skip
    try:
        for service in services:
            service.start()
        children = {s.name: s.supervisor_state() for s in services}
        pids = {name: state.child_pid for name, state in children.items() if state}
        assert len(set(pids.values())) == 3, pids
        assert all(s.status().running for s in services)

        postgres = services[0]
        first = pids["streams-postgres"]
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while not (postgres.status().running and _child(postgres) not in (None, first)):
            assert time.monotonic() < deadline, postgres.log_path.read_text()[-3000:]
            time.sleep(0.2)
        assert "restarts 1, last exit SIGKILL" in postgres.status().detail
    finally:
        stops = [s.stop() for s in services]
        env.drop()
    assert stops == ["stopped"] * 3, stops


def _child(service: Service) -> int | None:
    state = service.supervisor_state()
    return state.child_pid if state is not None else None


def test_a_clickhouse_projector_started_during_the_ddl_waits_for_the_folder(
    tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str
) -> None:
    """`stack up` applies the DDL in a child that holds the chDB folder for a few seconds;
    a supervised ClickHouse projector starting then waits for the folder instead of
    failing (no restart), and is healthy once the child lets go."""
    env = StreamsEnv(root=tmp_path / "streams", bootstrap=kafka_bootstrap, dsn=postgres_dsn)
    env.create()
    settings = StackSettings(
        state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", topic_prefix=env.prefix,
        streams_clickhouse_metrics_port=free_port(), streams_query_port=free_port(),
    )  # fmt: skip
    extra = {"TURNLOG_POSTGRES_SCHEMA": env.schema, "TURNLOG_STREAMS_CONSUMER_GROUP": env.group}
    projector = Service(streams_spec(settings, "clickhouse"), settings,
                        service_environment(settings, extra), start_timeout=90)  # fmt: skip
    hold = 6.0
    script = (
        "import time\n"
        "from turnlog.projections.clickhouse.store import connect\n"
        f"connect({settings.analytics_url!r}); print('open', flush=True); time.sleep({hold})"
    )
    try:
        with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True) as ddl:  # fmt: skip
            assert ddl.stdout is not None
            assert ddl.stdout.readline().strip() == "open"
            released_by = time.monotonic() + hold
            projector.start()
            assert time.monotonic() >= released_by - 0.5  # it could not have been ready sooner
            assert ddl.wait() == 0
        state = projector.supervisor_state()
        assert state is not None
        assert state.restarts == 0, projector.log_path.read_text()[-3000:]
        assert projector.status().running
    finally:
        stopped = projector.stop()
        env.drop()
    assert stopped == "stopped"
