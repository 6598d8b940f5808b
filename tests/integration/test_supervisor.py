"""Supervised services: a crash is restarted after growing pauses and counted in `status`,
kill -9 of the service is a crash too, SIGTERM stops it for good, and a service that ignores
SIGTERM is killed after the stop timeout. Real processes, no mocks."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.process import pid_alive
from turnlog.infra.stack.services import Service, ServiceSpec, Supervision
from turnlog.infra.supervise import SupervisorState

pytestmark = pytest.mark.integration

FIRST_PAUSE = 0.5
JITTER = 0.1
RUN = 1.5
"""Seconds a crashing test service runs before it exits (its start is checked first)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def supervised(tmp_path: Path, script: str, port: int, **supervision: float) -> Service:
    settings = StackSettings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    url = f"http://127.0.0.1:{port}/"
    spec = ServiceSpec("probe", (sys.executable, "-c", script), port, "PROBE_PORT", url, url)
    policy = Supervision(**{"first_pause": FIRST_PAUSE, "jitter": JITTER, "max_pause": 5.0,
                            "healthy_after": 60.0, "stop_timeout": 5.0, **supervision})  # fmt: skip
    return Service(spec, settings, {"PROBE_STARTS": str(tmp_path / "starts")},
                   start_timeout=20, supervision=policy)  # fmt: skip


def serving(port: int, *, then: str = "time.sleep(600)") -> str:
    """A service that answers its health URL; records each start's time."""
    return (
        "import http.server as h, os, signal, sys, threading, time\n"
        "with open(os.environ['PROBE_STARTS'], 'a') as f: f.write(f'{time.time()}\\n')\n"
        f"server = h.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler)\n"
        "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
        f"{then}\n"
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def state_of(service: Service) -> SupervisorState:
    state = service.supervisor_state()
    assert state is not None, f"no state file at {service.state_path}"
    return state


def starts(tmp_path: Path) -> list[float]:
    return [float(line) for line in (tmp_path / "starts").read_text().split()]


def test_a_crashing_service_is_restarted_after_growing_pauses(tmp_path: Path) -> None:
    port = free_port()
    # up long enough for the start's health check, then it crashes, again and again
    probe = supervised(tmp_path, serving(port, then=f"time.sleep({RUN}); sys.exit(1)"), port)
    probe.start()
    try:
        wait_for(lambda: state_of(probe).restarts >= 3 and len(starts(tmp_path)) >= 4,
                 "three restarts")  # fmt: skip
        state = state_of(probe)
        for n, pause in enumerate(state.history[:3], start=1):
            low = FIRST_PAUSE * 2 ** (n - 1)
            assert low <= pause <= low + JITTER, state.history
        # the pauses are really waited: each gap between two starts holds one run and the
        # pause (a lower bound, which a loaded machine cannot break)
        gaps = [b - a for a, b in itertools.pairwise(starts(tmp_path))][:3]
        for gap, pause in zip(gaps, state.history, strict=False):
            assert gap >= RUN + pause, (gaps, state.history)
        assert state.last_exit == 1
        detail = probe.status().detail
        assert f"restarts {state.restarts}, last exit 1 at " in detail, detail
        assert "exited with 1 after" in probe.log_path.read_text()
    finally:
        assert probe.stop() == "stopped"
    assert state_of(probe).phase == "stopped"


def test_a_long_healthy_run_resets_the_pause(tmp_path: Path) -> None:
    port = free_port()
    probe = supervised(tmp_path, serving(port, then="time.sleep(0.8); sys.exit(2)"), port,
                       healthy_after=0.5)  # fmt: skip
    probe.start()
    try:
        wait_for(lambda: state_of(probe).restarts >= 3, "three restarts")
        assert all(FIRST_PAUSE <= p <= FIRST_PAUSE + JITTER for p in state_of(probe).history)
    finally:
        probe.stop()


def test_sigterm_stops_the_service_without_a_restart(tmp_path: Path) -> None:
    port = free_port()
    probe = supervised(tmp_path, serving(port), port)
    probe.start()
    supervisor = probe.pidfile.read()
    child = state_of(probe).child_pid
    assert supervisor is not None
    assert child is not None
    os.kill(supervisor, signal.SIGTERM)
    wait_for(lambda: not pid_alive(supervisor), "the supervisor to exit")
    assert not pid_alive(child)
    state = state_of(probe)
    assert (state.phase, state.restarts, state.child_pid) == ("stopped", 0, None)
    assert len(starts(tmp_path)) == 1
    assert probe.stop() == "not running"


def test_kill_9_of_the_service_is_restarted(tmp_path: Path) -> None:
    port = free_port()
    probe = supervised(tmp_path, serving(port), port)
    probe.start()
    try:
        first = state_of(probe).child_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: state_of(probe).child_pid not in (None, first) and probe.healthy(),
                 "a new healthy child")  # fmt: skip
        state = state_of(probe)
        assert (state.restarts, state.last_exit) == (1, -signal.SIGKILL)
        assert not pid_alive(first)
        status = probe.status()
        assert status.running
        assert "restarts 1, last exit SIGKILL at " in status.detail
    finally:
        assert probe.stop() == "stopped"


def test_a_service_that_ignores_sigterm_is_killed_after_the_stop_timeout(
    tmp_path: Path,
) -> None:
    port = free_port()
    script = serving(port, then="signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)")
    probe = supervised(tmp_path, script, port, stop_timeout=1.0)
    probe.start()
    child = state_of(probe).child_pid
    assert child is not None
    began = time.monotonic()
    assert probe.stop() == "killed after 1 s (it did not stop on SIGTERM)"
    assert 0.9 < time.monotonic() - began < 6
    assert not pid_alive(child)
    assert state_of(probe).restarts == 0


def test_the_service_ends_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    """kill -9 of the supervisor: the service does not run on unsupervised (holding its
    port), so the next start finds the port free."""
    port = free_port()
    probe = supervised(tmp_path, serving(port), port)
    probe.start()
    supervisor = probe.pidfile.read()
    child = state_of(probe).child_pid
    assert supervisor is not None
    assert child is not None
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not pid_alive(supervisor), "the supervisor to die")
    wait_for(lambda: not pid_alive(child), "the service to end after its supervisor")
    assert not probe.status().running
    probe.start()
    assert probe.stop() == "stopped"
