"""Prometheus metrics of the streams worker, on a registry of its own (bounded labels).

Counters: `turnlog_streams_records_consumed_total` (records of the events topic),
`..._events_processed_total` (applied to the read models for the first time),
`..._duplicates_skipped_total` (applied already: a redelivery, or produced twice),
`..._dead_lettered_total{reason}`, `..._derived_records_total{topic="turns"|"sessions"}`,
`..._derived_failures_total`, `..._sink_retries_total`, `..._batch_failures_total`
(a batch failed as a whole and was processed again).
Histograms: `turnlog_streams_batch_size` (records), `..._batch_seconds` (a batch from
hand-over to delivered outputs), `..._commit_seconds{sink}` (a
batch's write, per sink: `postgres`, `clickhouse`), `..._freshness_seconds{sink}` (event
time to visible in the sink).
Gauge: `turnlog_streams_consumer_lag{partition}` (highwater - next offset to process).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from turnlog.streams.processor import BatchOutcome
from turnlog.streams.records import OutRecord

KNOWN_REASONS: Final = frozenset({
    "malformed", "unknown_type", "invalid_payload", "unsupported_specversion", "too_large",
    "unhandled_type", "projection_failed",
})  # fmt: skip
"""Values of the `reason` label; anything else is counted as `other`."""

_BATCH_BUCKETS: Final = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)
_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_FRESHNESS_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)


class StreamsMetrics:
    """The worker's metrics; `registry` is served at `/metrics`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "turnlog_streams_records_consumed", "Records consumed from the events topic.",
            registry=r,
        )  # fmt: skip
        self.processed = Counter(
            "turnlog_streams_events_processed",
            "Events applied to the read models for the first time.", registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            "turnlog_streams_duplicates_skipped",
            "Events skipped because they were applied already.", registry=r,
        )  # fmt: skip
        self.dead_lettered = Counter(
            "turnlog_streams_dead_lettered", "Records sent to the DLQ, by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.derived = Counter(
            "turnlog_streams_derived_records", "Derived records produced, by topic.",
            ["topic"], registry=r,
        )  # fmt: skip
        self.derived_failures = Counter(
            "turnlog_streams_derived_failures", "Derived records that could not be built.",
            registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "turnlog_streams_sink_retries", "Sink attempts repeated after a retryable error.",
            registry=r,
        )  # fmt: skip
        self.batch_failures = Counter(
            "turnlog_streams_batch_failures",
            "Batches that failed as a whole and were processed again.", registry=r,
        )  # fmt: skip
        self._histograms(r)
        self.lag = Gauge(
            "turnlog_streams_consumer_lag",
            "Records of the events topic not yet processed, per partition.", ["partition"],
            registry=r,
        )  # fmt: skip
        self._lag_partitions: set[int] = set()

    def _histograms(self, r: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "turnlog_streams_batch_size", "Records per batch.", buckets=_BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "turnlog_streams_batch_seconds",
            "Seconds to process a batch and deliver its outputs, retries included.",
            buckets=_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "turnlog_streams_commit_seconds", "Seconds to write a batch, per sink.", ["sink"],
            buckets=_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.freshness = Histogram(
            "turnlog_streams_freshness_seconds",
            "Seconds from an event's time to its being visible in a sink.", ["sink"],
            buckets=_FRESHNESS_BUCKETS, registry=r,
        )  # fmt: skip

    def record(self, outcome: BatchOutcome, *, turns_topic: str, sessions_topic: str) -> None:
        """Count a processed and published batch."""
        self.consumed.inc(outcome.consumed)
        self.processed.inc(outcome.applied)
        self.duplicates.inc(outcome.duplicates)
        self.retries.inc(outcome.retries)
        self.derived_failures.inc(outcome.derived_failures)
        self.batch_size.observe(outcome.consumed)
        for letter in outcome.dead_letters:
            reason = letter.reason if letter.reason in KNOWN_REASONS else "other"
            self.dead_lettered.labels(reason).inc()
        for sink, seconds in outcome.sink_seconds.items():
            self.commit_seconds.labels(sink).observe(seconds)
        for sink, values in outcome.freshness.items():
            histogram = self.freshness.labels(sink)
            for value in values:
                histogram.observe(value)
        self._count_derived(outcome.outputs, turns_topic=turns_topic,
                            sessions_topic=sessions_topic)

    def _count_derived(
        self, outputs: list[OutRecord], *, turns_topic: str, sessions_topic: str
    ) -> None:
        names = {turns_topic: "turns", sessions_topic: "sessions"}
        for record in outputs:
            label = names.get(record.topic)
            if label is not None:
                self.derived.labels(label).inc()

    def set_lag(self, lag: dict[int, int]) -> None:
        """Replace the lag gauge's partitions with `lag` (partition -> records): a
        partition no longer assigned to this worker leaves the gauge."""
        for partition in self._lag_partitions - set(lag):
            self.lag.remove(str(partition))
        for partition, value in lag.items():
            self.lag.labels(str(partition)).set(value)
        self._lag_partitions = set(lag)
