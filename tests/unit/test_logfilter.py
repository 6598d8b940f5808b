"""The log flood limiter: first records through, the rest counted, one summary a window."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from turnlog.streams.logfilter import RateLimitFilter, install_rate_limit

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        return [f"{r.name} {r.getMessage()}" for r in self.records]


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_first_records_pass_the_rest_are_summarized_once_the_window_ends() -> None:
    clock, summaries = FakeClock(), list[logging.LogRecord]()
    limiter = RateLimitFilter(sink=summaries.append, per_window=3, window=10.0, clock=clock)
    kept = [limiter.filter(_record("aiokafka.conn", "Unable to connect to %s", i))
            for i in range(7396)]  # fmt: skip
    assert kept[:3] == [True, True, True]
    assert not any(kept[3:])
    assert summaries == []
    clock.now += 10.0
    assert limiter.filter(_record("aiokafka.conn", "Unable to connect to %s", "b"))
    [summary] = summaries
    assert summary.getMessage() == (
        "suppressed 7393 similar messages from aiokafka.conn in the last 10 s "
        "('Unable to connect to %s')"
    )
    assert (summary.name, summary.levelno) == ("aiokafka.conn", logging.ERROR)


def test_each_logger_and_template_has_its_own_budget() -> None:
    clock = FakeClock()
    limiter = RateLimitFilter(sink=lambda _r: None, per_window=1, window=10.0, clock=clock)
    assert limiter.filter(_record("aiokafka.conn", "a %s", 1))
    assert limiter.filter(_record("aiokafka.conn", "b %s", 1))
    assert limiter.filter(_record("aiokafka.cluster", "a %s", 1))
    assert not limiter.filter(_record("aiokafka.conn", "a %s", 2))


def test_a_quiet_window_gives_no_summary_and_another_key_closes_an_ended_window() -> None:
    clock, summaries = FakeClock(), list[logging.LogRecord]()
    limiter = RateLimitFilter(sink=summaries.append, per_window=2, window=5.0, clock=clock)
    limiter.filter(_record("kafka", "quiet"))
    for _ in range(4):
        limiter.filter(_record("aiokafka", "loud", level=logging.WARNING))
    clock.now += 6.0
    assert limiter.filter(_record("other", "unrelated"))
    assert [s.getMessage() for s in summaries] == [
        "suppressed 2 similar messages from aiokafka in the last 5 s ('loud')"
    ]
    assert summaries[0].levelno == logging.WARNING


def test_flush_emits_the_open_windows() -> None:
    clock, summaries = FakeClock(), list[logging.LogRecord]()
    limiter = RateLimitFilter(sink=summaries.append, per_window=1, window=10.0, clock=clock)
    for _ in range(3):
        limiter.filter(_record("aiokafka.conn", "x"))
    clock.now += 2.0
    limiter.flush()
    assert [s.getMessage() for s in summaries] == [
        "suppressed 2 similar messages from aiokafka.conn in the last 2 s ('x')"
    ]
    limiter.flush()
    assert len(summaries) == 1


@pytest.mark.parametrize(("per_window", "window"), [(0, 1.0), (1, 0.0)])
def test_bad_limits_are_refused_with_their_name(per_window: int, window: float) -> None:
    with pytest.raises(ValueError, match="per_window" if per_window < 1 else "window"):
        RateLimitFilter(sink=lambda _r: None, per_window=per_window, window=window)


@pytest.fixture
def root_handler() -> Iterator[ListHandler]:
    root, handler = logging.getLogger(), ListHandler()
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
             for name in ("test_flood", "test_flood.conn")}  # fmt: skip
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def test_install_limits_the_children_of_a_named_logger(root_handler: ListHandler) -> None:
    clock = FakeClock()
    install_rate_limit(("test_flood",), per_window=9, window=10.0, clock=clock)
    # a second call replaces the first: one handler, the second's limits
    limiter = install_rate_limit(("test_flood",), per_window=2, window=10.0, clock=clock)
    assert len(logging.getLogger("test_flood").handlers) == 1
    child = logging.getLogger("test_flood.conn")
    child.setLevel(logging.INFO)
    for attempt in range(50):
        child.error("Unable connect to node with id %s", attempt)
    logging.getLogger("unrelated_to_flood").error("not limited")
    assert root_handler.lines == [
        "test_flood.conn Unable connect to node with id 0",
        "test_flood.conn Unable connect to node with id 1",
        "unrelated_to_flood not limited",
    ]
    clock.now += 11.0
    child.error("Unable connect to node with id %s", 99)
    assert root_handler.lines[3:] == [
        "test_flood.conn suppressed 48 similar messages from test_flood.conn in the last 10 s "
        "('Unable connect to node with id %s')",
        "test_flood.conn Unable connect to node with id 99",
    ]
    limiter.flush()
    assert len(root_handler.lines) == 5  # nothing suppressed since
