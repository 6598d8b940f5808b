"""Apply a batch to a sink so that one bad event never blocks the good ones.

A sink's failure is one of three kinds (the sink's `classify` says which):

- `RETRY`: the sink is unreachable or busy. The same chunk is tried again with bounded,
  growing pauses; when the attempts run out, `SinkUnavailableError` (nothing of the batch
  may be acknowledged).
- `ISOLATE`: something in the chunk cannot be written (an event type the projection does
  not know, a value the database refuses). The culprit is found by bisection: the chunk's
  halves are applied in order, recursively, and a single failing record is rejected. A
  sink may `pinpoint` the culprits directly (an error that names the event), which saves
  the bisection. Halves keep the records' order, so a partition's offsets are applied in
  ascending order.
- `FATAL`: the sink is broken for every record (a missing table, no permission): no
  record is to blame, so none is rejected; `SinkUnavailableError` at once.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from turnlog.streams.errors import SinkUnavailableError

logger = logging.getLogger("turnlog.streams.isolate")

T = TypeVar("T")
R = TypeVar("R")


class Verdict(enum.Enum):
    RETRY = "retry"
    ISOLATE = "isolate"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per chunk for `RETRY` failures, and the pause before each new attempt:
    `first_delay`, doubling, at most `max_delay` (seconds)."""

    attempts: int = 5
    first_delay: float = 0.2
    max_delay: float = 5.0

    def delays(self) -> list[float]:
        return [min(self.first_delay * 2**i, self.max_delay) for i in range(self.attempts - 1)]


QUICK_RETRIES: Final = RetryPolicy(attempts=2, first_delay=0.2, max_delay=0.2)
"""Within a batch, one quick retry of a failed write; past it a projection's engine waits
with its backoff (`retry`) and applies the batch again."""


@dataclass(slots=True)
class Applied(Generic[T, R]):
    """What `apply_isolating` did: one result per successful chunk, in order, and the
    rejected records with their errors."""

    results: list[R] = field(default_factory=list)
    rejected: list[tuple[T, BaseException]] = field(default_factory=list)
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Sink(Generic[T, R]):
    """A sink as the isolation sees it."""

    name: str
    apply: Callable[[list[T]], R]
    classify: Callable[[BaseException], Verdict]
    pinpoint: Callable[[BaseException, Sequence[T]], list[int]] = lambda error, chunk: []
    """Indices in `chunk` of the records `error` names; empty when it names none."""


def apply_isolating(
    sink: Sink[T, R], records: Sequence[T], *, policy: RetryPolicy, sleep: Callable[[float], None]
) -> Applied[T, R]:
    """Apply `records` to `sink`, rejecting the records it cannot take; see the module doc."""
    outcome: Applied[T, R] = Applied()
    if records:
        _apply_chunk(sink, list(records), outcome, policy, sleep)
    return outcome


class _Isolate(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _apply_chunk(
    sink: Sink[T, R], chunk: list[T], outcome: Applied[T, R], policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> None:  # fmt: skip
    try:
        outcome.results.append(_with_retries(sink, chunk, outcome, policy, sleep))
        return
    except _Isolate as failure:
        error = failure.cause
    if len(chunk) == 1:
        outcome.rejected.append((chunk[0], error))
        return
    named = set(sink.pinpoint(error, chunk))
    if named:
        for index in sorted(named):
            outcome.rejected.append((chunk[index], error))
        rest = [record for i, record in enumerate(chunk) if i not in named]
        if rest:
            _apply_chunk(sink, rest, outcome, policy, sleep)
        return
    middle = len(chunk) // 2
    _apply_chunk(sink, chunk[:middle], outcome, policy, sleep)
    _apply_chunk(sink, chunk[middle:], outcome, policy, sleep)


def _with_retries(
    sink: Sink[T, R], chunk: list[T], outcome: Applied[T, R], policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> R:  # fmt: skip
    delays = policy.delays()
    attempt = 0
    while True:
        try:
            return sink.apply(chunk)
        except Exception as error:
            verdict = sink.classify(error)
            if verdict is Verdict.ISOLATE:
                raise _Isolate(error) from error
            if verdict is Verdict.FATAL or attempt >= len(delays):
                raise SinkUnavailableError(
                    f"{sink.name} failed a batch of {len(chunk)} records"
                    f"{'' if verdict is Verdict.FATAL else f' {attempt + 1} times'}: {error}",
                    sink=sink.name,
                ) from error
            logger.warning(
                "%s failed a batch of %d records (%s); retrying in %.1fs",
                sink.name, len(chunk), error, delays[attempt],
            )  # fmt: skip
            sleep(delays[attempt])
            attempt += 1
            outcome.retries += 1
