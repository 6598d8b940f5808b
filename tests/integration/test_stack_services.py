"""Service supervision: a detached process with its own log, healthy before it counts as
started, found again by its pid file, stopped; one that dies at start is named with its log."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.errors import ComponentFailedError
from turnlog.infra.stack.process import pid_alive
from turnlog.infra.stack.services import Service, ServiceSpec

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
