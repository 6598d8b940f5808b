"""The supervisor's pure parts: its pauses, its state file, what `status` shows of it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from turnlog.infra.supervise import (
    SupervisorState,
    exit_description,
    pause_policy,
    read_state,
    write_state,
)

pytestmark = pytest.mark.unit


def test_pauses_double_from_the_first_and_stop_at_the_cap() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    random.seed(seed)  # tenacity's jitter draws from `random`
    pause = pause_policy(initial=1.0, maximum=30.0, jitter=1.0)
    for attempt, low in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0)]:
        assert low <= pause(attempt) <= low + 1.0
    assert [pause(n) for n in (6, 7, 50, 10_000)] == [30.0] * 4


def test_status_shows_restarts_and_the_last_exit() -> None:
    state = SupervisorState(name="api", supervisor_pid=1)
    assert state.describe() == "restarts 0"
    state.restarts, state.last_exit = 2, 1
    state.last_exit_at = "2026-12-03T12:03:04.123456+00:00"
    assert state.describe() == "restarts 2, last exit 1 at 12:03:04 UTC"
    state.last_exit, state.phase = -9, "waiting"
    state.next_start_at = "2026-12-03T12:03:08+00:00"
    assert state.describe() == (
        "restarts 2, last exit SIGKILL at 12:03:04 UTC, next start at 12:03:08"
    )


@pytest.mark.parametrize(
    ("code", "text"), [(0, "0"), (3, "3"), (-15, "SIGTERM"), (-99, "signal 99")]
)
def test_exit_statuses_are_named(code: int, text: str) -> None:
    assert exit_description(code) == text


def test_the_state_file_round_trips_and_garbage_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "run" / "api.state.json"
    assert read_state(path) is None
    state = SupervisorState(name="api", supervisor_pid=7, restarts=1, history=[1.2])
    write_state(path, state)
    assert read_state(path) == state
    path.write_text('{"name": "api"')
    assert read_state(path) is None
    path.write_text('{"unknown": 1}')
    assert read_state(path) is None
