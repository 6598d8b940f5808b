"""Prometheus metrics of the gateway: the hooks' own health and cost, and the agent's
STT / LLM / TTS latencies; and how the worker serves them with the publisher's.

Job processes record, the worker process serves. livekit-agents runs every job in its own
process, so the metrics use prometheus-client's multiprocess mode: `run_worker` points
`PROMETHEUS_MULTIPROC_DIR` at `TURNLOG_GATEWAY_METRICS_DIR` (emptied at start) before the
job processes start, they inherit it and write their samples to files there, and
`serve_metrics` in the worker process merges the files on every scrape.
`GatewayMetrics` uses only counters and histograms: their samples stay valid after a job
process exits, whereas gauges would need the exited pid marked dead. The publisher's
metrics reach the files through `RegistryMirror`; the endpoint adds a 0 for every series
no process holds (`ZeroFilled`) and the spool on disk (`SpoolOnDisk`). Without the
variable (tests, a library use) the metrics live in the given registry as usual.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from turnlog.agent_gateway import internals
from turnlog.agent_gateway.publisher.metrics import collector_for
from turnlog.agent_gateway.publisher.segment import SEGMENT_SUFFIX
from turnlog.schemas import (
    PAYLOAD_MODELS,
    CloudEvent,
    ConversationItemAdded,
    DataKeyIssued,
    LlmMetrics,
    MessageMetrics,
    MetricsCollected,
    ModelInfo,
    SessionClosed,
    SessionStarted,
    SessionSummarized,
    SttMetrics,
    TtsMetrics,
    TurnCompleted,
)

logger = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds; voice latencies live between 100 ms and a few seconds."""
HOOK_BUCKETS: Final = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.02)
"""Seconds; a hook should take tens of microseconds."""

_MODEL_LABELS: Final = ("provider", "model")

RECORDED_TYPES: Final = frozenset(
    [m.TYPE for m in PAYLOAD_MODELS if m not in (TurnCompleted, SessionSummarized)]
    + [DataKeyIssued.TYPE]
)
"""The event types a gateway publishes (the catalog less the derived topics' records):
its publisher's counters show each at 0 until it is counted."""


class GatewayMetrics:
    """Every metric of a job process, registered once in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.hook_failures = Counter(
            "turnlog_gateway_hook_failures",
            "Hooks that raised instead of recording an event (each one is a bug).",
            ("hook",),
            registry=registry,
        )
        self.hook_seconds = Histogram(
            "turnlog_gateway_hook_seconds",
            "Time one hook spends on the voice path: map, wrap, enqueue.",
            ("hook",),
            registry=registry,
            buckets=HOOK_BUCKETS,
        )
        self.sessions_started = Counter(
            "turnlog_gateway_sessions_started", "AgentSessions recorded.", registry=registry
        )
        self.sessions_closed = Counter(
            "turnlog_gateway_sessions_closed",
            "AgentSessions closed, by reason.",
            ("reason",),
            registry=registry,
        )
        latency = functools.partial(_latency_histogram, registry=registry)
        self.stt_delay = latency(
            "stt_delay",
            "From the end of the user's speech to the final transcript, per user turn.",
            _MODEL_LABELS,
        )
        self.end_of_turn_delay = latency(
            "end_of_turn_delay",
            "From the end of the user's speech to the end-of-turn decision, per user turn.",
        )
        self.llm_ttft = latency(
            "llm_ttft", "LLM time to first token, per agent reply.", _MODEL_LABELS
        )
        self.tts_ttfb = latency(
            "tts_ttfb", "TTS time to first audio after the first text, per agent reply.",
            _MODEL_LABELS,
        )
        self.e2e_latency = latency(
            "e2e_latency", "From the end of the user's speech to the agent starting to answer."
        )
        self.request_seconds = latency(
            "request",
            "Duration of one STT (non-streaming), LLM or TTS request, from LiveKit's metrics.",
            ("component", *_MODEL_LABELS),
        )

    def observe(self, event: CloudEvent[Any]) -> None:
        """Take the latencies a recorded event carries, and count sessions. (Events by type
        are the publisher's `turnlog_gateway_events_enqueued_total`.)"""
        data = event.data
        if isinstance(data, ConversationItemAdded):
            self._observe_message(data.metrics)
        elif isinstance(data, MetricsCollected):
            self._observe_request(data)
        elif isinstance(data, SessionStarted):
            self.sessions_started.inc()
        elif isinstance(data, SessionClosed):
            self.sessions_closed.labels(data.reason).inc()

    def _observe_message(self, metrics: MessageMetrics) -> None:
        if metrics.transcription_delay is not None:
            self.stt_delay.labels(*_model(metrics.stt)).observe(metrics.transcription_delay)
        if metrics.end_of_turn_delay is not None:
            self.end_of_turn_delay.observe(metrics.end_of_turn_delay)
        if metrics.llm_node_ttft is not None:
            self.llm_ttft.labels(*_model(metrics.llm)).observe(metrics.llm_node_ttft)
        if metrics.tts_node_ttfb is not None:
            self.tts_ttfb.labels(*_model(metrics.tts)).observe(metrics.tts_node_ttfb)
        if metrics.e2e_latency is not None:
            self.e2e_latency.observe(metrics.e2e_latency)

    def _observe_request(self, event: MetricsCollected) -> None:
        metrics = event.metrics
        if isinstance(metrics, SttMetrics) and metrics.streamed:
            return  # a streaming STT reports 0.0: there is no request to time
        if isinstance(metrics, SttMetrics | LlmMetrics | TtsMetrics):
            labels = (metrics.kind, metrics.provider or "", metrics.model or "")
            self.request_seconds.labels(*labels).observe(metrics.duration)


class RegistryMirror:
    """Copies the counters, gauges and histograms of `source` into metrics of the same
    names in `target`, which prometheus-client's multiprocess mode merges across processes.

    The publisher exposes its metrics through a custom collector read at scrape time, in
    its own process; the worker's endpoint merges only the multiprocess files. A job
    process therefore gives the publisher a private registry and calls `sync()` now and
    then, and once more before it exits. Everything is copied by difference since the last
    `sync()`, so several mirrors in one process (jobs under the thread executor) add up:
    - counters: the increase;
    - gauges (`livesum` mode: the endpoint sums live processes, and `forget_process()`
      drops a finished one): the change of this mirror's share;
    - histograms: each bucket's new observations and the sum's increase
      (`internals.add_to_histogram`; prometheus-client has no public way to add to a
      bucket), or, should its fields change, the same replayed through `observe()`.
    The children are looked up once; a sync then costs a dict lookup per unchanged
    series."""

    def __init__(self, source: CollectorRegistry, *, target: CollectorRegistry = REGISTRY) -> None:
        self._source = source
        self._target = target
        self._seen: dict[tuple[str, _Labels], float] = {}
        self._buckets_seen: dict[tuple[str, _Labels], list[float]] = {}
        self._children: dict[tuple[str, _Labels], Any] = {}

    def sync(self) -> None:
        """Bring the mirrored metrics up to the source's current values."""
        for family in self._source.collect():
            if family.type in ("counter", "gauge"):
                kind = Counter if family.type == "counter" else Gauge
                for sample in family.samples:
                    if kind is Gauge or sample.name.endswith("_total"):
                        self._add(kind, family, _labels(sample.labels), sample.value)
            elif family.type == "histogram":
                self._histogram(family)

    def _delta(self, key: tuple[str, _Labels], value: float) -> float:
        delta = value - self._seen.get(key, 0.0)
        self._seen[key] = value
        return delta

    def _child(self, kind: type[Any], family: Metric, labels: _Labels, **options: Any) -> Any:
        key = (family.name, labels)
        child = self._children.get(key)
        if child is None:  # created at once: a series at 0 (e.g. dropped) is shown too
            metric = served(self._target, kind, family, tuple(k for k, _ in labels), **options)
            child = self._children[key] = _child(metric, labels)
        return child

    def _add(self, kind: type[Any], family: Metric, labels: _Labels, value: float) -> None:
        child = self._child(kind, family, labels)
        delta = self._delta((family.name, labels), value)
        if delta > 0 or (delta and kind is Gauge):  # a counter never goes down
            child.inc(delta)

    def _histogram(self, family: Metric) -> None:
        series: dict[_Labels, tuple[list[tuple[float, float]], float]] = {}
        for sample in family.samples:
            labels = _labels({k: v for k, v in sample.labels.items() if k != "le"})
            cumulative, total = series.get(labels, ([], 0.0))
            if sample.name.endswith("_bucket"):
                cumulative.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                total = sample.value
            series[labels] = (cumulative, total)
        for labels, (cumulative, total) in series.items():
            cumulative.sort()
            bounds = tuple(bound for bound, _ in cumulative[:-1])  # +Inf last
            child = self._child(Histogram, family, labels, buckets=bounds)
            running = [count for _, count in cumulative]
            counts = [n - m for n, m in zip(running, [0.0, *running[:-1]], strict=True)]
            key = (family.name, labels)
            before = self._buckets_seen.get(key, [0.0] * len(counts))
            self._buckets_seen[key] = counts
            added = [max(round(now - then), 0) for now, then in zip(counts, before, strict=True)]
            increase = self._delta(key, total)
            if any(added) and not internals.add_to_histogram(child, added, increase):
                replay(child, bounds, added, increase)


_Labels = tuple[tuple[str, str], ...]

_served: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
_served_lock = threading.Lock()


def served(
    target: CollectorRegistry, kind: type[Any], family: Metric, labelnames: tuple[str, ...],
    **options: Any,
) -> Any:  # fmt: skip
    """The metric of `target` named as `family`, created once per registry and process
    (the mirrors of several jobs in one process share it)."""
    with _served_lock:
        metrics = _served.setdefault(target, {})
        metric = metrics.get(family.name)
        if metric is None:
            if kind is Gauge:
                options["multiprocess_mode"] = "livesum"
            metric = kind(family.name, family.documentation, labelnames, registry=target,
                          **options)  # fmt: skip
            metrics[family.name] = metric
        return metric


def replay(child: Histogram, bounds: tuple[float, ...], added: list[int], total: float) -> None:
    """Observe `added[i]` values in bucket i of `child` (bucket i holds (bounds[i-1],
    bounds[i]], the last one what is above bounds[-1]) adding up to `total`: values at the
    same share `t` of each bucket's width, `t` solved from `total` (clamped to the buckets)."""
    if not any(added):
        return
    lows = [0.0 if bounds[0] > 0 else bounds[0] - 1.0, *bounds[:-1]]
    finite = list(zip(lows, bounds, added[: len(bounds)], strict=True))
    over = added[len(bounds)]
    low = sum(n * lo for lo, _, n in finite)
    high = sum(n * hi for _, hi, n in finite)
    values: list[tuple[float, int]] = []
    if over:  # above the last bound: as little as the finite buckets' room requires
        above = max((total - high) / over, math.nextafter(bounds[-1], math.inf))
        values.append((above, over))
        total -= above * over
    t = 1.0 if high <= low else min(max((total - low) / (high - low), 0.0), 1.0)
    values += [(min(max(lo + t * (hi - lo), math.nextafter(lo, math.inf)), hi), n)
               for lo, hi, n in finite if n]  # fmt: skip
    for value, count in values:
        for _ in range(count):
            child.observe(value)


class ZeroFilled(Collector):
    """What `merged` collects, plus a 0 for every series of `zeros` it lacks.

    The worker's endpoint serves the job processes' files through it: before the first
    job, and between jobs (a finished job's gauges are dropped), the publisher's series
    and the job metrics without labels read 0 instead of being absent. (The worker
    process writes no zeros to the files itself: livekit-agents empties that directory
    when its worker starts.)"""

    def __init__(self, merged: Collector, zeros: CollectorRegistry) -> None:
        self._merged = merged
        self._zeros = zeros

    def collect(self) -> Iterable[Metric]:
        families = list(self._merged.collect())
        by_name = {family.name: family for family in families}
        for zero in self._zeros.collect():
            family = by_name.get(zero.name)
            if family is None:
                families.append(zero)
                continue
            held = {(s.name, _labels(s.labels)) for s in family.samples}
            family.samples.extend(s for s in zero.samples
                                  if (s.name, _labels(s.labels)) not in held)  # fmt: skip
        return families


class SpoolOnDisk(Collector):
    """`turnlog_gateway_spool_disk_bytes`: the size of every spool segment in `folders`,
    whichever publisher owns it, or none. What waits for Kafka on this host, also between
    jobs: a finished job's segments wait for the next publisher to adopt them, while its
    `turnlog_gateway_spool_bytes` share is gone with its process."""

    NAME: Final = "turnlog_gateway_spool_disk_bytes"

    def __init__(self, *folders: Path) -> None:
        self._folders = folders

    def collect(self) -> Iterable[Metric]:
        total = 0
        for folder in self._folders:
            for path in folder.glob(f"*{SEGMENT_SUFFIX}"):
                with contextlib.suppress(FileNotFoundError):  # drained meanwhile
                    total += path.stat().st_size
        return [GaugeMetricFamily(
            self.NAME, "Bytes of spool segments on this host, waiting for Kafka.", value=total
        )]


def endpoint_zeros() -> CollectorRegistry:
    """The series the worker's endpoint shows at 0 when no job process holds them: every
    publisher series (each event type a gateway publishes) and the job metrics without
    labels (sessions started, the turn latencies). Without them a counter would first
    appear already at 1, and `rate()` never sees that first step.

    Build it before `PROMETHEUS_MULTIPROC_DIR` is set: its values then live in memory."""
    zeros = CollectorRegistry()
    collector_for(zeros).expect(RECORDED_TYPES)
    GatewayMetrics(registry=zeros)
    return zeros


def forget_process(pid: int) -> None:
    """Drop the live gauges of a process that is done (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _labels(labels: dict[str, str]) -> _Labels:
    return tuple(sorted(labels.items()))


def _child(metric: Any, labels: _Labels) -> Any:
    return metric.labels(**dict(labels)) if labels else metric


def _latency_histogram(
    name: str, doc: str, labels: tuple[str, ...] = (), *, registry: CollectorRegistry | None
) -> Histogram:
    return Histogram(
        f"turnlog_agent_{name}_seconds", doc, labels, registry=registry, buckets=LATENCY_BUCKETS
    )


def _model(info: ModelInfo | None) -> tuple[str, str]:
    return (info.provider or "", info.model or "") if info else ("", "")


def serve_metrics(
    *, host: str, port: int, directory: Path | None, zeros: CollectorRegistry | None = None,
    spool_dirs: tuple[Path, ...] = (),
) -> tuple[WSGIServer, threading.Thread]:  # fmt: skip
    """Serve `/metrics` on `host:port` from a daemon thread: the merged samples of every
    process writing to `directory` (with the series of `zeros`, by default
    `endpoint_zeros()`, at 0 where none holds them), or this process's default registry
    without one; with `spool_dirs`, the spool on disk too (`SpoolOnDisk`)."""
    registry: CollectorRegistry = REGISTRY
    if directory is not None:
        registry = CollectorRegistry()
        merged = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
        registry.register(ZeroFilled(merged, zeros if zeros is not None else endpoint_zeros()))
    if spool_dirs:
        registry.register(SpoolOnDisk(*spool_dirs))
    server, thread = start_http_server(port, addr=host, registry=registry)
    logger.info("gateway metrics at http://%s:%s/metrics", host, server.server_port)
    return server, thread
