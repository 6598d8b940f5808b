"""The package's one retry policy (tenacity): capped, jittered exponential backoff, for
`DependencyUnavailableError` only, forever until the service stops. Each wait is logged
once with what it waits for; a programming error is never retried here."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from turnlog.streams.errors import DependencyUnavailableError

logger = logging.getLogger("turnlog.streams.retry")

T = TypeVar("T")

FIRST_WAIT: Final = 0.2
"""Seconds before the second attempt."""
MAX_WAIT: Final = 10.0
"""Longest wait between two attempts, seconds (jitter included)."""


def backoff() -> wait_exponential_jitter:
    """The package's wait: 0.2 s doubling, up to 10 s, with up to 1 s of jitter."""
    return wait_exponential_jitter(initial=FIRST_WAIT, max=MAX_WAIT, jitter=1.0)


def _log_wait(
    doing: str, on_wait: Callable[[bool], None] | None
) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        if on_wait is not None:
            on_wait(True)
        error = state.outcome.exception() if state.outcome is not None else None
        waited = state.next_action.sleep if state.next_action is not None else 0.0
        what = getattr(error, "dependency", "a dependency")
        # the first failure and then every tenth: a long outage is not a log flood
        if state.attempt_number == 1 or state.attempt_number % 10 == 0:
            logger.warning("%s: waiting for %s (attempt %d, next in %.1fs): %s",
                           doing, what, state.attempt_number, waited, error)  # fmt: skip

    return log


async def until_available(
    doing: str, attempt: Callable[[], Awaitable[T]],
    on_wait: Callable[[bool], None] | None = None,
) -> T:  # fmt: skip
    """`await attempt()` until it does not raise `DependencyUnavailableError`, waiting
    with `backoff()` between attempts; anything else propagates at once. Cancel the
    calling task to stop waiting. `on_wait(True)` before each wait, `on_wait(False)` once
    an attempt after a wait succeeds (a gauge of who waits)."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(DependencyUnavailableError),
        wait=backoff(),
        before_sleep=_log_wait(doing, on_wait),
        reraise=True,
    )
    async for attempt_state in retrying:
        with attempt_state:
            result = await attempt()
            number = attempt_state.retry_state.attempt_number
            if number > 1:
                logger.info("%s: available again after %d attempts", doing, number)
                if on_wait is not None:
                    on_wait(False)
            return result
    raise RuntimeError("unreachable: tenacity retries until success or re-raises")
