"""Process plumbing shared by the components: pid files, ports, detached children."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from turnlog.infra.stack.errors import ComponentFailedError, PrerequisiteError


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def ensure_port_free(host: str, port: int, *, owner: str, setting: str) -> None:
    """Fail with the port's name and the setting that moves it when the port is taken."""
    if port_open(host, port):
        raise PrerequisiteError(
            f"port {host}:{port} needed by {owner} is already in use by another process",
            f"stop that process (`ss -ltnp 'sport = :{port}'` shows it) "
            f"or choose another port with {setting}=<port>",
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not alive for our purposes, and when it is
    # our child it is reaped here, so no caller leaves it defunct.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        _reap(pid, wait=1.0)  # a zombie leader may still have threads finishing
        return False
    return True


class PidFile:
    """A pid file for a child we started, so status and stop find it again."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def alive_pid(self) -> int | None:
        pid = self.read()
        return pid if pid is not None and pid_alive(pid) else None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn_detached(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a child in its own session, so it outlives the launcher and Ctrl-C of it.

    Returns its pid. No ``Popen`` is kept: the launcher finds the child again through
    its pid file, and ``stop_pid`` reaps it when we are still its parent.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawnp(
        argv[0],
        list(argv),
        dict(env if env is not None else os.environ),
        file_actions=actions,
        setsid=True,
    )


def stop_pid(pid: int, *, timeout: float) -> bool:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL. True when it exited cleanly.

    A child of ours is reaped before this returns. "Not alive" comes before "reapable": a
    JVM's main thread exits first and shows the process as a zombie while its other
    threads finish, so a single non-blocking wait there left a defunct `java` per stopped
    test broker; the wait goes on until the child is collected (or found not ours).
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            _reap(pid, wait=max(1.0, deadline - time.monotonic()))
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid, wait=5.0)
    return False


def _reap(pid: int, *, wait: float = 0.0) -> None:
    """Collect the exit status of `pid` if it is our exited child; with `wait`, give it
    that many seconds to exit first. Not our child (found through a pid file): nothing."""
    deadline = time.monotonic() + wait
    while True:
        try:
            reaped, _status = os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            return
        if reaped or time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log_path: Path,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.1,
) -> float:
    """Poll ``ready`` until it holds; return the seconds waited.

    Fails early when ``alive`` says the process died, quoting the end of its log.
    """
    start = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - start
        waited = time.monotonic() - start
        if not alive():
            raise ComponentFailedError(f"{what} exited during start-up\n{tail(log_path)}")
        if waited > timeout:
            raise ComponentFailedError(
                f"{what} was not ready after {timeout:.0f} s\n{tail(log_path)}"
            )
        time.sleep(interval)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  (no log at {path})"
    return "\n".join(f"  | {line}" for line in text) + f"\n  (full log: {path})"
