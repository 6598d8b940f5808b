"""The package's one retry policy: `until_available` waits out `DependencyUnavailableError`
and nothing else (no services; waits shortened to milliseconds)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import pytest
from tenacity import AsyncRetrying, RetryCallState, wait_fixed

from turnlog.streams import retry
from turnlog.streams.errors import DependencyUnavailableError, SinkUnavailableError
from turnlog.streams.retry import FIRST_WAIT, MAX_WAIT, backoff, until_available

pytestmark = pytest.mark.unit

DEPENDENCY = "PostgreSQL at 127.0.0.1:15432"


class Attempts:
    """An attempt that fails with `errors` in turn, then returns `value`."""

    def __init__(self, errors: list[Exception], value: str = "done") -> None:
        self.errors = errors
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def down(n: int) -> list[Exception]:
    return [DependencyUnavailableError(f"refused #{i}", dependency=DEPENDENCY) for i in range(n)]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits of a millisecond instead of the package's backoff."""
    monkeypatch.setattr(retry, "backoff", lambda: wait_fixed(0.001))


@pytest.mark.usefixtures("quick")
@pytest.mark.asyncio
async def test_it_waits_out_an_unavailable_dependency_and_returns_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempt = Attempts(down(3), value="opened")
    with caplog.at_level(logging.INFO, logger="turnlog.streams.retry"):
        assert await until_available("starting", attempt) == "opened"
    assert attempt.calls == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the first wait, not each one
    first = warnings[0].getMessage()
    assert first.startswith("starting: waiting for PostgreSQL at 127.0.0.1:15432 (attempt 1,")
    assert "refused #0" in first
    assert any("available again after 4 attempts" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("quick")
@pytest.mark.asyncio
async def test_a_first_success_returns_at_once_without_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempt = Attempts([])
    with caplog.at_level(logging.DEBUG, logger="turnlog.streams.retry"):
        assert await until_available("starting", attempt) == "done"
    assert attempt.calls == 1
    assert caplog.records == []


@pytest.mark.usefixtures("quick")
@pytest.mark.asyncio
async def test_a_long_outage_logs_the_first_wait_and_every_tenth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempt = Attempts(down(21))
    with caplog.at_level(logging.WARNING, logger="turnlog.streams.retry"):
        await until_available("applying", attempt)
    assert attempt.calls == 22
    logged = [r.getMessage() for r in caplog.records]
    assert [m.split("(attempt ")[1].split(",")[0] for m in logged] == ["1", "10", "20"]


@pytest.mark.usefixtures("quick")
@pytest.mark.parametrize(
    "error",
    [ValueError("a bug"), SinkUnavailableError("fatal", sink="postgres"), KeyError("x")],
    ids=["programming-error", "sink-unavailable", "key-error"],
)
@pytest.mark.asyncio
async def test_any_other_error_propagates_at_once(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    attempt = Attempts([error])
    with (
        caplog.at_level(logging.WARNING, logger="turnlog.streams.retry"),
        pytest.raises(type(error)) as raised,
    ):
        await until_available("applying", attempt)
    assert raised.value is error
    assert attempt.calls == 1
    assert caplog.records == []


@pytest.mark.usefixtures("quick")
@pytest.mark.asyncio
async def test_an_error_after_waiting_propagates_too() -> None:
    bug = RuntimeError("bug")
    attempt = Attempts([*down(2), bug])
    with pytest.raises(RuntimeError) as raised:
        await until_available("applying", attempt)
    assert raised.value is bug
    assert attempt.calls == 3


@pytest.mark.asyncio
async def test_cancelling_the_caller_stops_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = asyncio.Event()

    def a_long_wait() -> Callable[[RetryCallState], float]:
        def wait(state: RetryCallState) -> float:
            waiting.set()
            return 60.0  # a wait the test never sees the end of

        return wait

    monkeypatch.setattr(retry, "backoff", a_long_wait)
    attempt = Attempts(down(1000))
    task = asyncio.create_task(until_available("starting", attempt))
    await waiting.wait()
    await asyncio.sleep(0.01)  # the task is now asleep in its wait
    task.cancel()
    async with asyncio.timeout(1.0):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert attempt.calls == 1


def state(attempt_number: int) -> RetryCallState:
    call = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    call.attempt_number = attempt_number
    return call


def test_the_backoff_doubles_from_the_first_wait_is_jittered_and_capped() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    random.seed(seed)  # tenacity's jitter draws from the module's generator
    wait = backoff()
    for number in range(1, 12):
        base = min(FIRST_WAIT * 2 ** (number - 1), MAX_WAIT)
        for _ in range(20):
            seconds = wait(state(number))
            assert base <= seconds <= min(base + 1.0, MAX_WAIT), number
    assert wait(state(60)) == MAX_WAIT
