"""Prometheus metrics of the streams worker, on a registry of its own (bounded labels).
Every series carries `projection` (`postgres`, `clickhouse`, `derived`).

Counters: `turnlog_streams_records_consumed_total` (records of the events topic),
`..._events_processed_total` (effects new to the projection),
`..._duplicates_skipped_total` (had already: a redelivery, or produced twice),
`..._dead_lettered_total{reason}`, `..._derived_records_total` (derived projection),
`..._batch_failures_total` (a batch waited for a dependency and was applied again).
Histograms: `turnlog_streams_batch_size` (records), `..._batch_seconds` (a batch from
hand-over to applied, waits included), `..._freshness_seconds` (event time to visible,
sampled: at most 64 events a batch).
Gauges: `turnlog_streams_consumer_lag{partition}` (end offset - next offset to apply),
`turnlog_streams_waiting` (1 while the projection waits for a dependency).
A projection's series exist at 0 from its start (`start`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from turnlog.projections.records import SourceRecord
from turnlog.streams.projector import Applied, DecodedBatch

KNOWN_REASONS: Final = frozenset({
    "malformed", "unknown_type", "invalid_payload", "unsupported_specversion", "too_large",
    "unhandled_type", "projection_failed",
})  # fmt: skip
"""Values of the `reason` label; anything else is counted as `other`."""

_BATCH_BUCKETS: Final = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)
_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_FRESHNESS_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)
FRESHNESS_SAMPLES: Final = 64
"""Events per batch whose freshness is observed (evenly spread): the histogram stays
exact in shape for a few hundred nanoseconds an event less."""

P = ["projection"]


def sample_freshness(sources: Sequence[SourceRecord]) -> list[float]:
    """Seconds from events' time to now, for at most `FRESHNESS_SAMPLES` evenly spread
    events (what the metric observes; the rest would be CPU for nothing)."""
    if not sources:
        return []
    now = datetime.now(UTC)
    step = -(-len(sources) // FRESHNESS_SAMPLES)  # ceiling: at most that many
    return [(now - s.event.time).total_seconds() for s in sources[::step]]


class StreamsMetrics:
    """The worker's metrics; `registry` is served at `/metrics`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "turnlog_streams_records_consumed", "Records consumed from the events topic.",
            P, registry=r,
        )  # fmt: skip
        self.processed = Counter(
            "turnlog_streams_events_processed", "Events whose effects are new.", P, registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            "turnlog_streams_duplicates_skipped",
            "Events skipped because the projection had them already.", P, registry=r,
        )  # fmt: skip
        self.dead_lettered = Counter(
            "turnlog_streams_dead_lettered", "Records sent to the DLQ, by reason.",
            [*P, "reason"], registry=r,
        )  # fmt: skip
        self.derived = Counter(
            "turnlog_streams_derived_records", "Derived records produced.", P, registry=r,
        )  # fmt: skip
        self.batch_failures = Counter(
            "turnlog_streams_batch_failures",
            "Batch attempts that waited for a dependency and were applied again.", P,
            registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "turnlog_streams_batch_size", "Records per batch.", P, buckets=_BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "turnlog_streams_batch_seconds",
            "Seconds to apply a batch, waits for dependencies included.", P,
            buckets=_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.freshness = Histogram(
            "turnlog_streams_freshness_seconds",
            "Seconds from an event's time to its being visible (sampled).", P,
            buckets=_FRESHNESS_BUCKETS, registry=r,
        )  # fmt: skip
        self.lag = Gauge(
            "turnlog_streams_consumer_lag",
            "Records of the events topic not yet applied, per partition.", [*P, "partition"],
            registry=r,
        )  # fmt: skip
        self.waiting = Gauge(
            "turnlog_streams_waiting", "1 while the projection waits for a dependency.", P,
            registry=r,
        )  # fmt: skip
        self._lag_partitions: dict[str, set[int]] = {}

    def start(self, projection: str) -> None:
        """Every series of `projection` at 0 (the lag's once partitions are assigned): a
        healthy projection's panels and alerts read 0 dead letters, not "no data"."""
        for counter in (self.consumed, self.processed, self.duplicates, self.derived,
                        self.batch_failures):  # fmt: skip
            counter.labels(projection)
        for reason in (*sorted(KNOWN_REASONS), "other"):
            self.dead_lettered.labels(projection, reason)
        for histogram in (self.batch_size, self.batch_seconds, self.freshness):
            histogram.labels(projection)
        self.waiting.labels(projection).set(0)

    def record(
        self, projection: str, batch: DecodedBatch, applied: Applied, *, seconds: float,
        decode_letters: bool,
    ) -> None:  # fmt: skip
        """Count an applied batch."""
        self.consumed.labels(projection).inc(len(batch))
        self.processed.labels(projection).inc(applied.events)
        self.duplicates.labels(projection).inc(applied.duplicates)
        self.derived.labels(projection).inc(applied.outputs)
        self.batch_size.labels(projection).observe(len(batch))
        self.batch_seconds.labels(projection).observe(seconds)
        letters = [*(batch.dead_letters if decode_letters else ()), *applied.dead_letters]
        for letter in letters:
            reason = letter.reason if letter.reason in KNOWN_REASONS else "other"
            self.dead_lettered.labels(projection, reason).inc()
        fresh = applied.freshness
        if fresh:
            histogram = self.freshness.labels(projection)
            step = -(-len(fresh) // FRESHNESS_SAMPLES)  # ceiling: at most that many
            for value in fresh[::step]:
                histogram.observe(value)

    def set_lag(self, projection: str, lag: dict[int, int]) -> None:
        """Replace the projection's lag partitions with `lag` (partition -> records): a
        partition no longer assigned to this worker leaves the gauge."""
        known = self._lag_partitions.get(projection, set())
        for partition in known - set(lag):
            self.lag.remove(projection, str(partition))
        for partition, value in lag.items():
            self.lag.labels(projection, str(partition)).set(value)
        self._lag_partitions[projection] = set(lag)
