"""Rate limiting of client libraries' log floods (aiokafka during a broker outage).

While Kafka is down aiokafka logs the same connection error thousands of times a second
(7,396 lines/s, 8.7 MB in 16 s, seen in an outage). `RateLimitFilter` lets the first few
records of each (logger name, message template) through per window and counts the rest;
when the window is over it emits one line: "suppressed N similar messages from
aiokafka.conn in the last 10 s". `install_rate_limit` puts it in front of the named
loggers, children included.

The one thing to know: a filter set on a logger does not see the records of its children
(`aiokafka.conn` propagates past a filter set on `aiokafka`), so `install_rate_limit`
gives each named logger one forwarding handler that carries the filter and hands what
passes to the root logger's handlers, whatever they are at the time of the record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

DEFAULT_PER_WINDOW: Final = 5
"""Records of one (logger, template) let through per window."""
DEFAULT_WINDOW: Final = 10.0
"""Length of a window, in seconds."""
MAX_KEYS: Final = 1024
"""Templates tracked at once; past it the oldest windows are closed early (a library
that formats its messages itself makes every message a new template)."""

Sink = Callable[[logging.LogRecord], None]


@dataclass
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0
    levelno: int = logging.NOTSET
    """Highest level among the suppressed records: the summary's level."""


class RateLimitFilter(logging.Filter):
    """Lets `per_window` records per (logger name, message template) through in each
    `window` seconds, and reports the rest with one summary record per window to `sink`.

    A window starts at the first record of its key. Summaries are emitted when a record
    (of any key) arrives after the window's end, and by `flush()`.
    """

    def __init__(
        self,
        *,
        sink: Sink,
        per_window: int = DEFAULT_PER_WINDOW,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_window < 1:
            raise ValueError(f"per_window must be at least 1, got {per_window}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        super().__init__()
        self.sink = sink
        self.per_window = per_window
        self.window = window
        self.clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._next_end = float("inf")
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        key = (record.name, str(record.msg))
        with self._lock:
            due = self._close_ended(now) if now >= self._next_end else []
            current = self._windows.get(key)
            if current is None:
                if len(self._windows) >= MAX_KEYS:
                    due += self._close_oldest()
                current = self._windows[key] = _Window(started=now)
                self._next_end = min(self._next_end, now + self.window)
            if current.passed < self.per_window:
                current.passed += 1
                keep = True
            else:
                current.suppressed += 1
                current.levelno = max(current.levelno, record.levelno)
                keep = False
        for summary in due:  # outside the lock: the sink may log
            self.sink(summary)
        return keep

    def flush(self) -> None:
        """Emit the summaries of every open window now (at shutdown, in tests)."""
        with self._lock:
            due = [self._summary(k, w, self.clock()) for k, w in self._windows.items()]
            self._windows.clear()
            self._next_end = float("inf")
        for summary in due:
            if summary is not None:
                self.sink(summary)

    def _close_ended(self, now: float) -> list[logging.LogRecord]:
        ended = [k for k, w in self._windows.items() if now >= w.started + self.window]
        due = [self._summary(k, self._windows.pop(k), now) for k in ended]
        self._next_end = min(
            (w.started + self.window for w in self._windows.values()), default=float("inf")
        )
        return [s for s in due if s is not None]

    def _close_oldest(self) -> list[logging.LogRecord]:
        oldest = min(self._windows, key=lambda k: self._windows[k].started)
        summary = self._summary(oldest, self._windows.pop(oldest), self.clock())
        return [summary] if summary is not None else []

    def _summary(
        self, key: tuple[str, str], window: _Window, now: float
    ) -> logging.LogRecord | None:
        if not window.suppressed:
            return None
        name, template = key
        seconds = min(now - window.started, self.window)
        return logging.LogRecord(
            name, window.levelno, pathname=__file__, lineno=0,
            msg="suppressed %d similar messages from %s in the last %.0f s (%r)",
            args=(window.suppressed, name, seconds, _shorten(template)), exc_info=None,
        )  # fmt: skip


def _shorten(template: str, limit: int = 120) -> str:
    return template if len(template) <= limit else template[: limit - 3] + "..."


class _ForwardingHandler(logging.Handler):
    """Hands what its filter lets through to the root logger's handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        handlers: list[logging.Handler | None] = [*logging.getLogger().handlers]
        for handler in handlers or [logging.lastResort]:
            if handler is not None and record.levelno >= handler.level:
                handler.handle(record)


def install_rate_limit(
    logger_names: Iterable[str] = ("aiokafka", "kafka"),
    *,
    per_window: int = DEFAULT_PER_WINDOW,
    window: float = DEFAULT_WINDOW,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimitFilter:
    """Rate-limit the records of `logger_names` and their children. Idempotent: a second
    call replaces the first one's handlers. Returns the filter (its `flush()` emits the
    pending summaries)."""
    forward = _ForwardingHandler()
    limiter = RateLimitFilter(sink=forward.emit, per_window=per_window, window=window,
                              clock=clock)  # fmt: skip
    forward.addFilter(limiter)
    for name in logger_names:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _ForwardingHandler)]:
            logger.removeHandler(old)
        logger.addHandler(forward)
        # the forwarding handler replaces propagation to the root, which would bypass it
        logger.propagate = False
    return limiter
