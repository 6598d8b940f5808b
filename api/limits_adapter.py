"""The adapter to the private parts of `limits` (5.x) the API uses: its registry of
storage schemes (to check a URI without connecting), and its in-process memory storage
with the expiry sweep spaced out.

`limits.storage.MemoryStorage` sweeps every counter for expired ones in a new thread
10 ms after each previous sweep, as long as requests come. With a counter per end-user
identity that is tens of thousands of counters swept a hundred times a second: measured
here at 3,000 token requests a second with distinct identities, about 100 us of CPU per
request after 20 s, and growing with the number of counters. Expired counters are
already dropped when read (`MemoryStorage.get`); the sweep only frees the memory of the
ones never read again, which can wait: this subclass sweeps at most every `sweep_every_s`.
It overrides the storage's name-mangled `__schedule_expiry`, so it checks the version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

import limits
from limits._storage_scheme import SCHEMES
from limits.storage import MemoryStorage

logger = logging.getLogger(__name__)

_SCHEDULE: Final = "_MemoryStorage__schedule_expiry"
_SWEEP: Final = "_MemoryStorage__expire_events"
ADAPTED: Final = limits.__version__.startswith("5.") and all(
    callable(getattr(MemoryStorage, name, None)) for name in (_SCHEDULE, _SWEEP)
)
"""Whether this `limits` has the private methods the adapter replaces (a test holds it)."""


def storage_schemes() -> frozenset[str]:
    """Every URI scheme `limits.storage.storage_from_string` knows (`async+...` too)."""
    return frozenset(SCHEMES)


class SparseSweepMemoryStorage(MemoryStorage):
    """`MemoryStorage` that sweeps expired counters at most every `sweep_every_s`."""

    def __init__(self, *, sweep_every_s: float = 15.0) -> None:
        super().__init__("memory://")
        self._sweep_every_s = sweep_every_s
        self._next_sweep = time.monotonic() + sweep_every_s
        self._sweep_lock = threading.Lock()

    def _sweep(self) -> None:
        sweep: Callable[[], None] = getattr(self, _SWEEP)
        if not self._sweep_lock.acquire(blocking=False):
            return
        try:
            sweep()
        except (KeyError, RuntimeError):  # a counter read (and dropped) meanwhile
            logger.debug("rate limit sweep interrupted; the next one finishes it")
        finally:
            self._sweep_lock.release()

    def _schedule(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every_s
        threading.Thread(target=self._sweep, name="rate-limit-sweep", daemon=True).start()


if ADAPTED:
    setattr(SparseSweepMemoryStorage, _SCHEDULE, SparseSweepMemoryStorage._schedule)
else:  # pragma: no cover - another limits: its own sweep, slower but correct
    logger.warning("limits %s: the memory storage keeps its own expiry sweep", limits.__version__)
