"""Prometheus metrics of the gateway: the hooks' own health and cost, and the agent's
STT / LLM / TTS latencies.

Job processes record, the worker process serves. livekit-agents runs every job in its own
process, so the metrics use prometheus-client's multiprocess mode: `__main__` points
`PROMETHEUS_MULTIPROC_DIR` at `TURNLOG_GATEWAY_METRICS_DIR` (emptied at start) before the
job processes start, they inherit it and write their samples to files there, and
`serve_metrics` in the worker process merges the files on every scrape.
Only counters and histograms are used: their samples stay valid after a job process exits,
whereas gauges would need the exited pid marked dead. Without the variable (tests, a
library use) the metrics live in the given registry as usual.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
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
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from turnlog.schemas import (
    CloudEvent,
    ConversationItemAdded,
    LlmMetrics,
    MessageMetrics,
    MetricsCollected,
    ModelInfo,
    SessionClosed,
    SessionStarted,
    SttMetrics,
    TtsMetrics,
)

logger = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds; voice latencies live between 100 ms and a few seconds."""
HOOK_BUCKETS: Final = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.02)
"""Seconds; a hook should take tens of microseconds."""

_MODEL_LABELS: Final = ("provider", "model")


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
    """Copies the counters and gauges of `source` into metrics of the same names in
    `target`, which prometheus-client's multiprocess mode merges across processes.

    The publisher exposes its counters through a custom collector read at scrape time, in
    its own process; the worker's endpoint merges only the multiprocess files. A job
    process therefore gives the publisher a private registry and calls `sync()` now and
    then, and once more before it exits. Gauges use the `livesum` mode: the endpoint sums
    live processes, and `forget_process()` drops a finished one. Histograms are not
    mirrored (prometheus-client has no public way to add to a bucket)."""

    def __init__(self, source: CollectorRegistry, *, target: CollectorRegistry = REGISTRY) -> None:
        self._source = source
        self._target = target
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._seen: dict[tuple[str, tuple[str, ...]], float] = {}

    def sync(self) -> None:
        """Bring the mirrored metrics up to the source's current values."""
        for family in self._source.collect():
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                if family.type == "counter" and sample.name.endswith("_total"):
                    self._add(family.name, family.documentation, labels, sample.value)
                elif family.type == "gauge":
                    gauge = self._gauge(family.name, family.documentation, labels)
                    _child(gauge, labels).set(sample.value)

    def _add(self, name: str, doc: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        key = (name, tuple(f"{k}={v}" for k, v in labels))
        delta = value - self._seen.get(key, 0.0)
        self._seen[key] = value
        counter = self._counters.get(name)
        if counter is None:
            names = tuple(k for k, _ in labels)
            counter = Counter(name, doc, names, registry=self._target)
            self._counters[name] = counter
        child = _child(counter, labels)  # a series at 0 (e.g. dropped) is shown too
        if delta > 0:
            child.inc(delta)

    def _gauge(self, name: str, doc: str, labels: tuple[tuple[str, str], ...]) -> Gauge:
        gauge = self._gauges.get(name)
        if gauge is None:
            names = tuple(k for k, _ in labels)
            gauge = Gauge(name, doc, names, registry=self._target, multiprocess_mode="livesum")
            self._gauges[name] = gauge
        return gauge


def forget_process(pid: int) -> None:
    """Drop the live gauges of a process that is done (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _child(metric: Any, labels: tuple[tuple[str, str], ...]) -> Any:
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
    *, host: str, port: int, directory: Path | None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve `/metrics` on `host:port` from a daemon thread: the merged samples of every
    process writing to `directory`, or this process's default registry without one."""
    registry: CollectorRegistry = REGISTRY
    if directory is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    server, thread = start_http_server(port, addr=host, registry=registry)
    logger.info("gateway metrics at http://%s:%s/metrics", host, server.server_port)
    return server, thread
