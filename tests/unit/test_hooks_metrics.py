"""The gateway's Prometheus metrics: what an event observes, and the worker's endpoint
merging the samples job processes write in multiprocess mode."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from turnlog.agent_gateway.metrics import GatewayMetrics, serve_metrics
from turnlog.schemas import (
    ConversationItemAdded,
    MessageMetrics,
    MetricsCollected,
    ModelInfo,
    SessionClosed,
    SttMetrics,
    agent_source,
    new_event,
)
from turnlog.schemas.base import EventPayload

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def event(payload: EventPayload) -> object:
    return new_event(
        payload, session_id="s", sequence=1, source=agent_source("a", "w"), subject="r"
    )


def test_a_reply_observes_llm_tts_and_e2e_latency() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    reply = ConversationItemAdded(
        item_id="i",
        role="assistant",
        text="x",
        metrics=MessageMetrics(
            llm_node_ttft=0.4,
            tts_node_ttfb=0.2,
            e2e_latency=1.3,
            llm=ModelInfo(provider="openai", model="gpt-4.1-mini"),
            tts=ModelInfo(provider="festival", model="slt"),
        ),
    )
    question = ConversationItemAdded(
        item_id="j",
        role="user",
        text="y",
        metrics=MessageMetrics(transcription_delay=0.3, end_of_turn_delay=0.6),
    )

    metrics.observe(event(reply))  # type: ignore[arg-type]
    metrics.observe(event(question))  # type: ignore[arg-type]

    value = registry.get_sample_value
    assert value("turnlog_agent_llm_ttft_seconds_sum",
                 {"provider": "openai", "model": "gpt-4.1-mini"}) == 0.4
    assert value("turnlog_agent_tts_ttfb_seconds_sum",
                 {"provider": "festival", "model": "slt"}) == 0.2
    assert value("turnlog_agent_e2e_latency_seconds_sum") == 1.3
    assert value("turnlog_agent_stt_delay_seconds_sum", {"provider": "", "model": ""}) == 0.3
    assert value("turnlog_agent_end_of_turn_delay_seconds_sum") == 0.6


def test_streaming_stt_has_no_request_duration() -> None:
    from datetime import UTC, datetime

    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    now = datetime.now(UTC)
    streamed = SttMetrics(timestamp=now, label="s", request_id="r", duration=0.0,
                          audio_duration=2.0, streamed=True)
    batch = SttMetrics(timestamp=now, label="s", request_id="r", duration=0.7,
                       audio_duration=2.0, streamed=False, provider="openai", model="whisper")

    metrics.observe(event(MetricsCollected(metrics=streamed)))  # type: ignore[arg-type]
    metrics.observe(event(MetricsCollected(metrics=batch)))  # type: ignore[arg-type]
    metrics.observe(event(SessionClosed(reason="error")))  # type: ignore[arg-type]

    labels = {"component": "stt", "provider": "openai", "model": "whisper"}
    assert registry.get_sample_value("turnlog_agent_request_seconds_count", labels) == 1.0
    assert registry.get_sample_value(
        "turnlog_gateway_sessions_closed_total", {"reason": "error"}
    ) == 1.0


JOB_PROCESS = textwrap.dedent(
    """
    from turnlog.agent_gateway.metrics import GatewayMetrics
    from turnlog.schemas import ConversationItemAdded, MessageMetrics, agent_source, new_event

    metrics = GatewayMetrics()
    reply = ConversationItemAdded(
        item_id="i", role="assistant", text="x", metrics=MessageMetrics(llm_node_ttft=0.25)
    )
    metrics.observe(new_event(reply, session_id="s", sequence=1,
                              source=agent_source("a", "w"), subject="r"))
    """
)


def test_the_endpoint_merges_what_exited_job_processes_recorded(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):  # two job processes, one after the other
        subprocess.run([sys.executable, "-c", JOB_PROCESS], cwd=REPO, env=env, check=True)

    server, thread = serve_metrics(host="127.0.0.1", port=0, directory=tmp_path)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    assert 'turnlog_agent_llm_ttft_seconds_count{model="",provider=""} 2.0' in body


# -- the publisher's metrics, mirrored for the worker's endpoint


def transcript(sequence: int) -> Any:
    from turnlog.schemas import UserTranscribed

    return new_event(
        UserTranscribed(transcript="hi", is_final=True),
        session_id="s",
        sequence=sequence,
        source=agent_source("a", "w"),
        subject="r",
    )


@pytest.mark.asyncio
async def test_the_mirror_copies_counters_by_delta_and_gauges(tmp_path: Path) -> None:
    from turnlog.agent_gateway.metrics import RegistryMirror
    from turnlog.agent_gateway.publisher import Publisher, PublisherSettings

    private, served = CollectorRegistry(), CollectorRegistry()
    publisher = Publisher(PublisherSettings(spool_dir=tmp_path), registry=private)
    mirror = RegistryMirror(private, target=served)
    labels = {"type": "turnlog.user.transcribed.v1"}
    try:
        for sequence in (1, 2, 3):
            publisher.publish(transcript(sequence))  # not started: they wait in the queue
        mirror.sync()
        first = served.get_sample_value("turnlog_gateway_events_enqueued_total", labels)
        publisher.publish(transcript(4))
        mirror.sync()
        mirror.sync()
    finally:
        await publisher.aclose(timeout=1.0)

    assert first == 3.0
    assert served.get_sample_value("turnlog_gateway_events_enqueued_total", labels) == 4.0
    assert served.get_sample_value("turnlog_gateway_queue_depth") == 4.0
    assert served.get_sample_value("turnlog_gateway_events_dropped_total") == 0.0


MIRRORED_JOB = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from prometheus_client import CollectorRegistry
    from turnlog.agent_gateway.metrics import RegistryMirror, forget_process
    from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
    from turnlog.schemas import UserTranscribed, agent_source, new_event

    async def job():
        private = CollectorRegistry()
        spool = Path(sys.argv[1])
        publisher = Publisher(PublisherSettings(spool_dir=spool), registry=private)
        mirror = RegistryMirror(private)
        for sequence in (1, 2):
            publisher.publish(new_event(UserTranscribed(transcript="hi", is_final=True),
                                        session_id="s", sequence=sequence,
                                        source=agent_source("a", "w"), subject="r"))
        mirror.sync()
        await publisher.aclose(timeout=1.0)
        mirror.sync()
        if sys.argv[2] == "forget":
            forget_process(os.getpid())

    asyncio.run(job())
    """
)


@pytest.mark.parametrize("ending", ["forget", "crash"])
def test_mirrored_publisher_metrics_reach_the_endpoint(tmp_path: Path, ending: str) -> None:
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-c", MIRRORED_JOB, str(tmp_path / "spool"), ending],
        cwd=REPO, env=env, check=True, timeout=60,
    )

    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=str(directory))  # type: ignore[no-untyped-call]
    labels = {"type": "turnlog.user.transcribed.v1"}
    assert merged.get_sample_value("turnlog_gateway_events_enqueued_total", labels) == 2.0
    assert merged.get_sample_value("turnlog_gateway_events_spooled_total", labels) == 2.0
    assert merged.get_sample_value("turnlog_gateway_events_dropped_total") == 0.0
    depth = merged.get_sample_value("turnlog_gateway_queue_depth")
    assert depth == (None if ending == "forget" else 0.0)


def test_the_mirror_copies_histogram_buckets_and_sum_exactly() -> None:
    from prometheus_client import Histogram

    from turnlog.agent_gateway.metrics import RegistryMirror

    seed = 20261203
    print(f"seed {seed}")
    rng = random.Random(seed)
    private, served = CollectorRegistry(), CollectorRegistry()
    bounds = (0.001, 0.01, 0.1, 1.0, 10.0)
    source = Histogram("lat_seconds", "d", ("kind",), registry=private, buckets=bounds)
    mirror = RegistryMirror(private, target=served)
    for _ in range(6):  # syncs between bursts, including empty ones
        for _ in range(rng.randrange(0, 300)):
            value = rng.choice([rng.uniform(0, 0.001), rng.expovariate(3), rng.uniform(10, 99)])
            source.labels(rng.choice(["a", "b"])).observe(value)
        mirror.sync()
        for kind in ("a", "b"):
            for le in ("0.001", "0.01", "0.1", "1.0", "10.0", "+Inf"):
                labels = {"kind": kind, "le": le}
                want = private.get_sample_value("lat_seconds_bucket", labels)
                assert served.get_sample_value("lat_seconds_bucket", labels) == want
            want_sum = private.get_sample_value("lat_seconds_sum", {"kind": kind})
            got_sum = served.get_sample_value("lat_seconds_sum", {"kind": kind})
            assert got_sum == pytest.approx(want_sum, rel=1e-9, abs=1e-9)


def test_mirrors_of_two_jobs_in_one_process_add_up(tmp_path: Path) -> None:
    """Jobs under the thread executor: one served metric per name, every job's share."""
    from turnlog.agent_gateway.metrics import RegistryMirror
    from turnlog.agent_gateway.publisher import Publisher, PublisherSettings

    served = CollectorRegistry()
    labels = {"type": "turnlog.user.transcribed.v1"}
    jobs = []
    for index in range(2):
        private = CollectorRegistry()
        publisher = Publisher(PublisherSettings(spool_dir=tmp_path / str(index)), registry=private)
        jobs.append((publisher, RegistryMirror(private, target=served)))
    for count, (publisher, mirror) in zip((2, 3), jobs, strict=True):
        for sequence in range(1, count + 1):
            publisher.publish(transcript(sequence))  # not started: they wait in the queue
        mirror.sync()
    assert served.get_sample_value("turnlog_gateway_events_enqueued_total", labels) == 5.0
    assert served.get_sample_value("turnlog_gateway_queue_depth") == 5.0

    first, first_mirror = jobs[0]
    asyncio.run(first.aclose(timeout=1.0))  # spooled: no broker
    first_mirror.sync()
    assert served.get_sample_value("turnlog_gateway_queue_depth") == 3.0
    assert served.get_sample_value("turnlog_gateway_events_spooled_total", labels) == 2.0
    second, second_mirror = jobs[1]
    asyncio.run(second.aclose(timeout=1.0))
    second_mirror.sync()
    assert served.get_sample_value("turnlog_gateway_queue_depth") == 0.0
    assert served.get_sample_value("turnlog_gateway_events_spooled_total", labels) == 5.0


def scrape(port: int) -> CollectorRegistry:
    """What the endpoint serves, as a registry to read samples from."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        families = list(text_string_to_metric_families(response.read().decode()))

    class Parsed:
        def collect(self) -> list[Any]:
            return families

    registry = CollectorRegistry()
    registry.register(Parsed())  # type: ignore[arg-type]
    return registry


def test_the_endpoint_shows_zeros_before_and_between_jobs(tmp_path: Path) -> None:
    """Every publisher series at 0 before any job, and after a job's gauges were dropped
    (the worker writes no zeros to the directory: livekit-agents empties it)."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    server, thread = serve_metrics(host="127.0.0.1", port=0, directory=directory)
    try:
        before = scrape(server.server_port)
        error = {"type": "turnlog.error.v1"}
        for name in ("enqueued", "sent", "spooled", "failed"):
            assert before.get_sample_value(f"turnlog_gateway_events_{name}_total", error) == 0.0
        assert before.get_sample_value("turnlog_gateway_events_dropped_total") == 0.0
        assert before.get_sample_value("turnlog_gateway_queue_depth") == 0.0
        assert before.get_sample_value("turnlog_gateway_spool_bytes") == 0.0
        assert before.get_sample_value("turnlog_gateway_produce_latency_seconds_count") == 0.0
        # the job metrics without labels too: a first session must count as an increase
        assert before.get_sample_value("turnlog_gateway_sessions_started_total") == 0.0
        assert before.get_sample_value("turnlog_agent_e2e_latency_seconds_count") == 0.0
        # no series of the derived topics' types: the gateway never publishes them
        assert before.get_sample_value(
            "turnlog_gateway_events_sent_total", {"type": "turnlog.turn.completed.v1"}
        ) is None

        env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
        subprocess.run(
            [sys.executable, "-c", MIRRORED_JOB, str(tmp_path / "spool"), "forget"],
            cwd=REPO, env=env, check=True, timeout=60,
        )  # fmt: skip
        after = scrape(server.server_port)
        labels = {"type": "turnlog.user.transcribed.v1"}
        assert after.get_sample_value("turnlog_gateway_events_spooled_total", labels) == 2.0
        assert after.get_sample_value("turnlog_gateway_events_enqueued_total", labels) == 2.0
        assert after.get_sample_value("turnlog_gateway_events_spooled_total", error) == 0.0
        assert after.get_sample_value("turnlog_gateway_queue_depth") == 0.0
        assert after.get_sample_value("turnlog_gateway_spool_bytes") == 0.0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_puts_each_count_in_its_bucket_and_keeps_the_sum(seed: int) -> None:
    """The public fallback of the mirror's bulk add: `observe()` at chosen values."""
    from prometheus_client import Histogram

    from turnlog.agent_gateway.metrics import replay

    print(f"seed {seed}")
    rng = random.Random(seed)
    bounds = (0.005, 0.05, 0.5, 5.0)
    registry, replayed = CollectorRegistry(), CollectorRegistry()
    source = Histogram("x_seconds", "d", registry=registry, buckets=bounds)
    target = Histogram("x_seconds", "d", registry=replayed, buckets=bounds)
    values = [rng.choice([rng.uniform(0, 0.005), rng.uniform(0.005, 5), rng.uniform(5, 60)])
              for _ in range(rng.randrange(1, 400))]  # fmt: skip
    for value in values:
        source.observe(value)
    edges = (*bounds, float("inf"))
    added = [sum(1 for v in values if (i == 0 or v > edges[i - 1]) and v <= edges[i])
             for i in range(len(edges))]  # fmt: skip
    replay(target, bounds, added, sum(values))
    for le in ("0.005", "0.05", "0.5", "5.0", "+Inf"):
        want = registry.get_sample_value("x_seconds_bucket", {"le": le})
        assert replayed.get_sample_value("x_seconds_bucket", {"le": le}) == want
    got = replayed.get_sample_value("x_seconds_sum")
    assert got == pytest.approx(registry.get_sample_value("x_seconds_sum"), rel=1e-9)


def test_the_spool_on_disk_counts_every_segment_whoever_owns_it(tmp_path: Path) -> None:
    from turnlog.agent_gateway.metrics import SpoolOnDisk

    keys = tmp_path / "keys"
    keys.mkdir()
    (tmp_path / "a1b2.0000000001.seg").write_bytes(b"x" * 1000)  # a dead publisher's
    (tmp_path / "c3d4.overflow.seg").write_bytes(b"x" * 200)
    (keys / "e5f6.0000000001.seg").write_bytes(b"x" * 30)
    (tmp_path / "a1b2.0000000001.ack").write_bytes(b"x" * 8)  # not a segment
    (tmp_path / ".tmp-a1b2").write_bytes(b"x" * 4000)
    registry = CollectorRegistry()
    registry.register(SpoolOnDisk(tmp_path, keys, tmp_path / "missing"))
    assert registry.get_sample_value("turnlog_gateway_spool_disk_bytes") == 1230.0
    (tmp_path / "a1b2.0000000001.seg").unlink()  # drained
    assert registry.get_sample_value("turnlog_gateway_spool_disk_bytes") == 230.0
