"""Children the launcher starts are reaped when they stop: no defunct processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import zombie_children
from turnlog.infra.stack.process import pid_alive, spawn_detached, stop_pid

pytestmark = pytest.mark.unit


def test_a_stopped_child_is_reaped(tmp_path: Path) -> None:
    pid = spawn_detached(["sleep", "30"], log_path=tmp_path / "sleep.log")
    assert pid_alive(pid)
    assert stop_pid(pid, timeout=5) is True
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie
    assert pid not in zombie_children()


def test_a_child_that_ignores_sigterm_is_killed_and_reaped(tmp_path: Path) -> None:
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
             "print('ready', flush=True); time.sleep(30)"
    log = tmp_path / "stubborn.log"
    pid = spawn_detached(["python3", "-c", script], log_path=log)
    deadline = time.monotonic() + 10
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    assert stop_pid(pid, timeout=0.5) is False
    assert not Path(f"/proc/{pid}").exists()


def test_a_child_that_died_by_itself_is_reaped_when_asked_about(tmp_path: Path) -> None:
    pid = spawn_detached(["sleep", "30"], log_path=tmp_path / "sleep.log")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid not in zombie_children():
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.02)
    assert pid_alive(pid) is False
    assert not Path(f"/proc/{pid}").exists()
