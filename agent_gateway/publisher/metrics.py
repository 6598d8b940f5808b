"""Prometheus metrics of the publisher, exposed through a custom collector.

The hot path only bumps plain dict counters: `publish()` costs no prometheus-client lock
or label lookup, and the sender thread records a latency with one `bisect`. The
collector reads those counters when scraped. Every publisher attached to a registry feeds
the same series (one collector per registry), so a process running several jobs, each
with its own publisher, still exposes one set of metrics; a closed publisher's counts are
kept so the counters never go down. The only label is the event type, which the catalog
bounds.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

PREFIX: Final = "turnlog_gateway"
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
)
_COUNTERS: Final = {
    "enqueued": "Events accepted by publish() (counted by type once the sender takes them).",
    "sent": "Events acknowledged by Kafka (acks=all).",
    "spooled": "Events written to the disk spool (broker unreachable or queue full).",
    "failed": "Events Kafka can never accept, kept in the dead-letter file.",
}


class PublisherMetrics:
    """The counters of one publisher. Each dict has a single writer thread."""

    def __init__(
        self,
        *,
        queue_depth: Callable[[], int],
        spool_bytes: Callable[[], int],
        queued_types: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.enqueued: dict[str, int] = {}
        """By event type, counted by the sender thread when it takes the event (reading
        `event.type` in `publish()` costs the hook a cache miss: half its time); events
        still queued are counted by type at scrape time (`queued_types`)."""
        self.spill_enqueued: dict[str, int] = {}
        """Enqueued while the queue was full (`publish()` handled them itself; its thread)."""
        self.overflowed: dict[str, int] = {}
        """Spooled by `publish()` itself (queue full); written by that thread."""
        self.sent: dict[str, int] = {}
        self.spooled: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.dropped = 0
        """Events neither sent nor kept on disk; only a failing disk at shutdown."""
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.queue_depth = queue_depth
        self.spool_bytes = spool_bytes
        self.queued_types = queued_types
        self._lock = threading.Lock()

    def count_failed(self, kind: str) -> None:
        """Both threads may dead-letter an event, hence the lock (a rare path)."""
        with self._lock:
            self.failed[kind] = self.failed.get(kind, 0) + 1

    def count_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def observe_latency(self, seconds: float) -> None:
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def totals(self, name: str) -> dict[str, int]:
        counts = dict(getattr(self, name))  # dict() copies in one step under the GIL
        extra = {"spooled": self.overflowed, "enqueued": self.spill_enqueued}.get(name)
        for kind, count in dict(extra or {}).items():
            counts[kind] = counts.get(kind, 0) + count
        if name == "enqueued":
            # After the counters: an event the sender takes in between is then missed
            # once (counted at the next scrape), never counted twice, so the total
            # never goes down.
            for kind, count in self.queued_types().items():
                counts[kind] = counts.get(kind, 0) + count
        return counts


class _Totals:
    """Counts of publishers that were closed, so that counters stay monotonic."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[str, int]] = {name: {} for name in _COUNTERS}
        self.dropped = 0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def add(self, metrics: PublisherMetrics) -> None:
        for name, into in self.counters.items():
            for kind, count in metrics.totals(name).items():
                into[kind] = into.get(kind, 0) + count
        self.dropped += metrics.dropped
        for index, count in enumerate(metrics.latency_buckets):
            self.latency_buckets[index] += count
        self.latency_sum += metrics.latency_sum


class PublisherCollector(Collector):
    """Sums the metrics of every publisher attached to one registry."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[PublisherMetrics] = weakref.WeakSet()
        self._retired = _Totals()
        self._expected: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def expect(self, types: Iterable[str]) -> None:
        """Show a series at 0 for each of `types` before any event of it is counted: a
        healthy system's panels and alerts read 0 spooled or failed, not "no data"."""
        with self._lock:
            self._expected |= frozenset(types)

    def attach(self, metrics: PublisherMetrics) -> None:
        with self._lock:
            self._live.add(metrics)

    def detach(self, metrics: PublisherMetrics) -> None:
        with self._lock:
            if metrics in self._live:
                self._live.discard(metrics)
                self._retired.add(metrics)

    def describe(self) -> Iterable[Metric]:
        return list(self._families([], _Totals()))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            live = list(self._live)
            retired = self._retired
            return list(self._families(live, retired))

    def _families(self, live: list[PublisherMetrics], retired: _Totals) -> Iterator[Metric]:
        for name, documentation in _COUNTERS.items():
            family = CounterMetricFamily(
                f"{PREFIX}_events_{name}", documentation, labels=["type"]
            )
            counts = dict.fromkeys(self._expected, 0) | retired.counters[name]
            for metrics in live:
                for kind, count in metrics.totals(name).items():
                    counts[kind] = counts.get(kind, 0) + count
            for kind in sorted(counts):
                family.add_metric([kind], counts[kind])
            yield family
        yield CounterMetricFamily(
            f"{PREFIX}_events_dropped",
            "Events lost: neither acknowledged by Kafka nor kept on disk. Stays 0.",
            value=retired.dropped + sum(m.dropped for m in live),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "Events waiting in memory for the sender thread.",
            value=sum(m.queue_depth() for m in live),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_spool_bytes", "Bytes in the spool segments this process owns.",
            value=sum(m.spool_bytes() for m in live),
        )
        yield _latency(live, retired)


def _latency(live: list[PublisherMetrics], retired: _Totals) -> Metric:
    buckets = list(retired.latency_buckets)
    total = retired.latency_sum
    for metrics in live:
        for index, count in enumerate(list(metrics.latency_buckets)):
            buckets[index] += count
        total += metrics.latency_sum
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
        running += count
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return HistogramMetricFamily(
        f"{PREFIX}_produce_latency_seconds",
        "Seconds from publish() to the broker's acknowledgement (spooled events included).",
        buckets=cumulative,
        sum_value=total,
    )


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, PublisherCollector] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


def collector_for(registry: CollectorRegistry | None) -> PublisherCollector:
    """The collector of `registry` (the default one when None), registered once."""
    target = REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(target)
        if collector is None:
            collector = PublisherCollector()
            target.register(collector)
            _collectors[target] = collector
        return collector
