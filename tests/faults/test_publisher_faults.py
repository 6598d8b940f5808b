"""Faults with a real broker of our own: stopped before a session, stopped during one,
a worker killed with SIGKILL while its spool holds events, a full queue while the broker
is unreachable, and shutdown with the broker down. Every event arrives once, in order;
nothing is dropped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from tests.faults.conftest import IsolatedBroker
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.agent_gateway.publisher.testing import session_events, spooled_records
from turnlog.infra.stack.config import REPO_ROOT
from turnlog.schemas import MAX_EVENT_BYTES, CloudEvent, decode

pytestmark = [pytest.mark.faults, pytest.mark.asyncio]


def _settings(broker: IsolatedBroker, topic: str, spool: Path, **extra: Any) -> PublisherSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap, "topic": topic, "spool_dir": spool,
        "delivery_timeout": 3.0, "connect_timeout": 2.0, "reconnect_backoff": 0.1,
        "reconnect_backoff_max": 0.5,
    }
    return PublisherSettings(**(values | extra))


async def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[str, int]]:
    """(session, sequence) of `count` records and any duplicate arriving within 1 s."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_bytes=4 * MAX_EVENT_BYTES,
        max_partition_fetch_bytes=4 * MAX_EVENT_BYTES,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batches.values() for r in rs]
        batches = await consumer.getmany(timeout_ms=1000)
        records += [r for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    return [(e.sessionid, e.sequence) for e in (decode(r.value) for r in ordered)]


def _expected(events: list[CloudEvent[Any]]) -> list[tuple[str, int]]:
    return [(e.sessionid, e.sequence) for e in events]


def _by_session(pairs: list[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for session, sequence in pairs:
        out.setdefault(session, []).append(sequence)
    return out


async def test_broker_down_for_a_whole_session_then_back(
    broker: IsolatedBroker, topic: str, spool_dir: Path
) -> None:
    events = [e for pair in zip(session_events("a", 150), session_events("b", 150), strict=True)
              for e in pair]
    await asyncio.to_thread(broker.stop)
    publisher = Publisher(_settings(broker, topic, spool_dir), registry=CollectorRegistry())
    await publisher.start()
    for event in events:
        publisher.publish(event)
    await _until(lambda: publisher.stats().spooled == len(events))

    await asyncio.to_thread(broker.start)
    await _until(lambda: publisher.stats().sent == len(events))
    await publisher.aclose()

    received = await _consume(broker.bootstrap, topic, len(events))
    assert _by_session(received) == _by_session(_expected(events))  # once, in order
    assert publisher.stats().dropped == 0
    assert spooled_records(spool_dir) == []


async def test_broker_stopped_in_the_middle_of_a_session(
    broker: IsolatedBroker, topic: str, spool_dir: Path
) -> None:
    events = session_events("a", 400)
    publisher = Publisher(_settings(broker, topic, spool_dir), registry=CollectorRegistry())
    await publisher.start()
    for event in events[:100]:
        publisher.publish(event)
    await _until(lambda: publisher.stats().sent == 100)

    stopping = asyncio.create_task(asyncio.to_thread(broker.stop))
    for event in events[100:]:  # a hook every 10 ms while the broker goes away
        publisher.publish(event)
        await asyncio.sleep(0.01)
    await stopping
    await _until(lambda: publisher.stats().sent + publisher.stats().spooled >= len(events))
    await asyncio.to_thread(broker.start)
    await _until(lambda: publisher.stats().sent >= len(events))
    await publisher.aclose()

    received = await _by_session_async(broker, topic, len(events))
    first_seen = list(dict.fromkeys(received["a"]))  # a re-send after a failure may repeat
    assert first_seen == [e.sequence for e in events]
    assert publisher.stats().dropped == 0


async def _by_session_async(broker: IsolatedBroker, topic: str, count: int) -> dict[str, list[int]]:
    return _by_session(await _consume(broker.bootstrap, topic, count))


async def test_spooled_events_survive_kill_9_and_are_delivered_once(
    broker: IsolatedBroker, topic: str, spool_dir: Path
) -> None:
    count = 500
    await asyncio.to_thread(broker.stop)
    with _child("spool", broker, topic, spool_dir, count) as child:
        assert child.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            assert json.loads(line)["spooled"] == count
        finally:
            os.kill(child.pid, signal.SIGKILL)  # with its events in the spool
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(spooled_records(spool_dir)) == count

    await asyncio.to_thread(broker.start)
    with _child("drain", broker, topic, spool_dir, count) as successor:
        out, _ = await asyncio.to_thread(successor.communicate, timeout=60)
    stats = json.loads(out.strip().splitlines()[-1])

    assert (stats["sent"], stats["dropped"], stats["adopted_segments"]) == (count, 0, 1)
    received = await _consume(broker.bootstrap, topic, count)
    assert received == [("sess-killed", n) for n in range(1, count + 1)]  # once, in order
    assert spooled_records(spool_dir) == []


def _child(mode: str, broker: IsolatedBroker, topic: str, spool: Path,
           count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.spool_child", mode, "--bootstrap",
         broker.bootstrap, "--topic", topic, "--spool", str(spool), "--count", str(count)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )


async def test_a_full_queue_spills_instead_of_blocking_while_the_broker_is_down(
    broker: IsolatedBroker, topic: str, spool_dir: Path
) -> None:
    events = [e for pair in zip(session_events("a", 1500), session_events("b", 1500),
                                strict=True) for e in pair]
    await asyncio.to_thread(broker.stop)
    publisher = Publisher(_settings(broker, topic, spool_dir, queue_size=32),
                          registry=CollectorRegistry())
    await publisher.start()
    latencies: list[float] = []
    for event in events:  # one burst, no await: the queue fills at once
        began = time.perf_counter()
        publisher.publish(event)
        latencies.append(time.perf_counter() - began)

    latencies.sort()
    assert publisher.stats().overflowed > 0
    assert latencies[len(latencies) * 99 // 100] < 0.001  # p99 under 1 ms
    assert latencies[-1] < 0.25  # bounded: never waits for the broker
    await asyncio.to_thread(broker.start)
    await _until(lambda: publisher.stats().sent == len(events))
    await publisher.aclose()

    received = await _consume(broker.bootstrap, topic, len(events))
    assert _by_session(received) == _by_session(_expected(events))
    assert publisher.stats().dropped == 0


async def test_aclose_with_the_broker_down_returns_in_time_and_keeps_events_on_disk(
    broker: IsolatedBroker, topic: str, spool_dir: Path
) -> None:
    events = session_events("a", 300)
    await asyncio.to_thread(broker.stop)
    publisher = Publisher(_settings(broker, topic, spool_dir), registry=CollectorRegistry())
    await publisher.start()
    for event in events:
        publisher.publish(event)

    began = time.monotonic()
    await publisher.aclose(timeout=3.0)
    assert time.monotonic() - began < 3.3
    assert [r.message.event_id for r in spooled_records(spool_dir)] == [e.id for e in events]
    assert publisher.stats().dropped == 0

    await asyncio.to_thread(broker.start)
    successor = Publisher(_settings(broker, topic, spool_dir), registry=CollectorRegistry())
    await successor.start()
    await _until(lambda: successor.stats().sent == len(events))
    await successor.aclose()
    received = await _consume(broker.bootstrap, topic, len(events))
    assert received == _expected(events)
