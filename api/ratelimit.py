"""Rate limits: a token bucket per subject (an API key, a client address), in memory.

A bucket holds `per_minute` requests and refills continuously, so a subject may burst up
to its minute's allowance and then gets one request every `60 / per_minute` seconds.
A refused request learns how many whole seconds to wait (the `Retry-After` header).
The buckets live in the process: with several workers, each enforces the limit alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

_PRUNE_AT: Final = 100_000


class RateLimiter:
    """`per_minute` requests per subject per minute, as a token bucket."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        self.per_minute = per_minute
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, at)

    def acquire(self, subject: str) -> int:
        """Take one request for `subject`: 0 when allowed, else the whole seconds (>= 1)
        until the next one is."""
        now = self._clock()
        tokens, at = self._buckets.get(subject, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            self._buckets[subject] = (tokens - 1.0, now)
            return 0
        self._buckets[subject] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def wait(self, subject: str) -> int:
        """Whole seconds until `subject` may make a request (0: now), taking nothing."""
        now = self._clock()
        tokens, at = self._buckets.get(subject, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * self._rate)
        return 0 if tokens >= 1.0 else max(1, math.ceil((1.0 - tokens) / self._rate))

    def _prune(self, now: float) -> None:
        """Forget the subjects whose bucket is full again: they look like new ones."""
        full_after = self.per_minute / self._rate
        self._buckets = {
            s: (t, at) for s, (t, at) in self._buckets.items() if now - at < full_after
        }
