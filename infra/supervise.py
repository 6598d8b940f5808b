"""The supervisor of one service: `python -m turnlog.infra.supervise --name N --state F -- argv`.

`turnlog up` starts each service under one of these (detached, it outlives the launcher).
It starts the service as its child, restarts it when it exits on its own after a capped,
jittered, growing pause (tenacity's `wait_exponential_jitter`; back to the first pause
once the service has run `--healthy-after` seconds), and records every restart (count,
last exit status and time) in a small JSON state file that `turnlog status` reads.

The one thing to know: SIGTERM or SIGINT means stop. It is forwarded to the service, which
is never restarted after it; a service that has not exited `--stop-timeout` seconds later
is killed, reaped, and the supervisor exits after it. The child stays in the supervisor's
process group, so the launcher can still kill both when the supervisor itself hangs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final, Literal

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

logger = logging.getLogger("turnlog.infra.supervise")

FIRST_PAUSE: Final = 1.0
"""Seconds before the first restart; doubles per restart in a row."""
MAX_PAUSE: Final = 30.0
"""Longest pause before a restart, jitter included."""
JITTER: Final = 1.0
"""Up to this many seconds are added at random to each pause."""
HEALTHY_AFTER: Final = 60.0
"""A run at least this long resets the pauses to the first one."""
STOP_TIMEOUT: Final = 25.0
"""Seconds the service has to exit after SIGTERM before it is killed (shorter than the
launcher's own wait for the supervisor, so the supervisor reports the kill)."""

PR_SET_PDEATHSIG: Final = 1
"""prctl(2) option: the signal the child gets when its parent dies."""

Phase = Literal["running", "waiting", "stopping", "stopped"]


@dataclass
class SupervisorState:
    """What the state file holds; `turnlog status` shows it."""

    name: str
    supervisor_pid: int
    phase: Phase = "running"
    child_pid: int | None = None
    restarts: int = 0
    """Restarts after an unexpected exit since the supervisor started."""
    last_exit: int | None = None
    """Exit status of the last unexpected exit; negative: killed by that signal."""
    last_exit_at: str | None = None
    """When it happened, RFC 3339 in UTC."""
    next_start_at: str | None = None
    """While waiting: when the service starts again, RFC 3339 in UTC."""
    killed_on_stop: bool = False
    """The service ignored SIGTERM on stop and was killed."""
    history: list[float] = field(default_factory=list)
    """The pauses before each restart, seconds (the last 20)."""

    def describe(self) -> str:
        """What `status` shows: `restarts 2, last exit 1 at 12:03:04 UTC`."""
        text = f"restarts {self.restarts}"
        if self.last_exit is not None:
            text += f", last exit {exit_description(self.last_exit)}"
        if self.last_exit_at is not None:
            text += f" at {datetime.fromisoformat(self.last_exit_at):%H:%M:%S} UTC"
        if self.phase == "waiting" and self.next_start_at is not None:
            text += f", next start at {datetime.fromisoformat(self.next_start_at):%H:%M:%S}"
        return text


def exit_description(returncode: int) -> str:
    """`1`, or the signal's name for a negative status (`SIGKILL`)."""
    if returncode >= 0:
        return str(returncode)
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def read_state(path: Path) -> SupervisorState | None:
    """The state in `path`, or None when there is none (or it is not ours)."""
    try:
        return SupervisorState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_state(path: Path, state: SupervisorState) -> None:
    # write then rename: a reader never sees half a file
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(asdict(state)))
    partial.replace(path)


def pause_policy(
    initial: float = FIRST_PAUSE, maximum: float = MAX_PAUSE, jitter: float = JITTER
) -> Callable[[int], float]:
    """Seconds to wait before restart number `n` in a row (1, 2, ...)."""
    wait = wait_exponential_jitter(initial=initial, max=maximum, jitter=jitter)

    def pause(attempt: int) -> float:
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return float(wait(state))

    return pause


class Supervisor:
    """Runs `argv` until stopped, restarting it after unexpected exits."""

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        state_path: Path,
        pause: Callable[[int], float],
        healthy_after: float = HEALTHY_AFTER,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.argv = list(argv)
        self.state_path = state_path
        self.pause = pause
        self.healthy_after = healthy_after
        self.stop_timeout = stop_timeout
        self.state = SupervisorState(name=name, supervisor_pid=os.getpid())
        self._stop = threading.Event()
        self._kill_at: float | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None

    def _die_with_parent(self) -> None:
        """In the child, before exec: SIGTERM when the supervisor dies (even by SIGKILL),
        so a service never runs on unsupervised, holding its port. Linux only; the
        supervisor has no threads, which makes a pre-exec function safe."""
        if self._libc is not None:
            self._libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != self.state.supervisor_pid:  # it died before the prctl
                os._exit(1)

    def run(self) -> int:
        """Supervise until SIGTERM or SIGINT; returns the supervisor's exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        in_a_row = 0
        while not self._stop.is_set():
            started = time.monotonic()
            returncode = self._run_child()
            if self._stop.is_set():
                break
            ran = time.monotonic() - started
            in_a_row = 1 if ran >= self.healthy_after else in_a_row + 1
            self._wait_before_restart(returncode, ran, self.pause(in_a_row))
        self.state.phase, self.state.child_pid, self.state.next_start_at = "stopped", None, None
        write_state(self.state_path, self.state)
        killed = " (killed: it ignored SIGTERM)" if self.state.killed_on_stop else ""
        logger.info("%s stopped%s", self.state.name, killed)
        return 0

    def _run_child(self) -> int:
        # stdout and stderr are inherited: the service writes to the supervisor's log
        self._child = child = subprocess.Popen(self.argv, preexec_fn=self._die_with_parent)
        self.state.phase, self.state.child_pid = "running", child.pid
        self.state.next_start_at = None
        write_state(self.state_path, self.state)
        if self._stop.is_set():  # a stop that came while it was starting
            self._forward(signal.SIGTERM)
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self._kill_at is not None and time.monotonic() >= self._kill_at:
                    child.kill()
                    self.state.killed_on_stop = True

    def _wait_before_restart(self, returncode: int, ran: float, pause: float) -> None:
        now = datetime.now(UTC)
        self.state.restarts += 1
        self.state.last_exit = returncode
        self.state.last_exit_at = now.isoformat()
        self.state.phase, self.state.child_pid = "waiting", None
        self.state.next_start_at = datetime.fromtimestamp(now.timestamp() + pause, UTC).isoformat()
        self.state.history = [*self.state.history, round(pause, 3)][-20:]
        write_state(self.state_path, self.state)
        logger.warning("%s exited with %s after %.1f s; restart %d in %.1f s", self.state.name,
                       exit_description(returncode), ran, self.state.restarts, pause)  # fmt: skip
        self._stop.wait(pause)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._kill_at = time.monotonic() + self.stop_timeout
            self.state.phase = "stopping"
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        child = self._child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m turnlog.infra.supervise",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--name", required=True, help="the service's name, for the log")
    parser.add_argument("--state", required=True, type=Path, help="the JSON state file")
    parser.add_argument("--first-pause", type=float, default=FIRST_PAUSE)
    parser.add_argument("--max-pause", type=float, default=MAX_PAUSE)
    parser.add_argument("--jitter", type=float, default=JITTER)
    parser.add_argument("--healthy-after", type=float, default=HEALTHY_AFTER)
    parser.add_argument("--stop-timeout", type=float, default=STOP_TIMEOUT)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the service's argv")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the service's command is missing (after --)")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s supervisor[{args.name}]: %(message)s")  # fmt: skip
    supervisor = Supervisor(
        name=args.name, argv=command, state_path=args.state,
        pause=pause_policy(args.first_pause, args.max_pause, args.jitter),
        healthy_after=args.healthy_after, stop_timeout=args.stop_timeout,
    )  # fmt: skip
    return supervisor.run()


if __name__ == "__main__":
    raise SystemExit(main())
