"""The publisher against an in-memory broker: ordering across spill and drain, producer
failures, full queues, rejected events, shutdown, metrics. Real threads and files, no
services."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from turnlog.agent_gateway.publisher import Publisher, PublisherError, PublisherSettings
from turnlog.agent_gateway.publisher.message import Message
from turnlog.agent_gateway.publisher.spool import DEAD_LETTER_DIR
from turnlog.agent_gateway.publisher.spool_format import iter_file
from turnlog.agent_gateway.publisher.testing import FakeBroker, session_events, spooled_records
from turnlog.schemas import MAX_EVENT_BYTES, CloudEvent, decode

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


def _settings(spool: Path, **overrides: Any) -> PublisherSettings:
    values: dict[str, Any] = {
        "spool_dir": spool, "delivery_timeout": 0.3, "reconnect_backoff": 0.02,
        "reconnect_backoff_max": 0.1, "linger": 0.001, "idle_linger": 0.005,
        "fsync_interval": 0.01,
    }
    return PublisherSettings(**(values | overrides))


def _interleave(*sessions: list[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
    return [event for group in zip(*sessions, strict=True) for event in group]


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def _assert_once_in_order(delivered: list[Message], sent: list[CloudEvent[Any]]) -> None:
    by_session: dict[str, list[int]] = {}
    for message in delivered:
        event = decode(message.value)
        by_session.setdefault(event.sessionid, []).append(event.sequence)
    expected: dict[str, list[int]] = {}
    for event in sent:
        expected.setdefault(event.sessionid, []).append(event.sequence)
    assert by_session == expected


async def test_each_session_arrives_once_in_order_in_one_partition(tmp_path: Path) -> None:
    broker = FakeBroker()
    events = _interleave(*(session_events(f"sess-{n}", 200) for n in range(3)))
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await publisher.start()
    for event in events:
        publisher.publish(event)
    await publisher.aclose()

    _assert_once_in_order(broker.delivered(), events)
    assert all(len(broker.partitions_of(f"sess-{n}")) == 1 for n in range(3))
    stats = publisher.stats()
    assert (stats.enqueued, stats.sent, stats.spooled, stats.dropped) == (600, 600, 0, 0)
    assert stats.spool_segments == 0


async def test_a_down_broker_spools_and_drains_in_order_before_newer_events(
    tmp_path: Path,
) -> None:
    broker = FakeBroker(up=False)
    first = _interleave(session_events("a", 150), session_events("b", 150))
    later = _interleave(session_events("a", 50, start=151), session_events("b", 50, start=151))
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await publisher.start()  # never fails because Kafka is down

    for event in first:
        publisher.publish(event)
    await _until(lambda: publisher.stats().spooled == 300)
    assert broker.delivered() == []
    broker.set_up(True)
    for event in later:  # published while the spool drains: they must queue behind it
        publisher.publish(event)
    await _until(lambda: publisher.stats().sent == 400)
    await publisher.aclose()

    _assert_once_in_order(broker.delivered(), first + later)
    assert publisher.stats().dropped == 0
    assert publisher.stats().spool_bytes == 0


async def test_a_full_queue_spills_to_disk_instead_of_blocking(tmp_path: Path) -> None:
    broker = FakeBroker()
    events = _interleave(session_events("a", 500), session_events("b", 500))
    publisher = Publisher(_settings(tmp_path, queue_size=16), registry=CollectorRegistry(),
                          connect=broker.connect)
    slowest = 0.0
    for event in events:  # before start(): nothing drains the queue yet
        began = time.perf_counter()
        publisher.publish(event)
        slowest = max(slowest, time.perf_counter() - began)

    assert publisher.stats().queue_depth == 16
    assert publisher.stats().overflowed == 1000 - 16
    assert slowest < 0.05
    await publisher.start()
    await _until(lambda: publisher.stats().sent == 1000)
    await publisher.aclose()
    _assert_once_in_order(broker.delivered(), events)


async def test_a_wedged_producer_is_abandoned_and_nothing_is_lost(tmp_path: Path) -> None:
    broker = FakeBroker()
    before = session_events("a", 100)
    during = session_events("a", 100, start=101)
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await publisher.start()
    for event in before:
        publisher.publish(event)
    await _until(lambda: publisher.stats().sent == 100)

    broker.hang = True  # aiokafka with the broker gone: no error, no ack, forever
    for event in during:
        publisher.publish(event)
    await _until(lambda: publisher.stats().producer_rebuilds >= 1)
    await _until(lambda: publisher.stats().spooled >= 1)
    broker.hang = False
    broker.set_up(True)
    await _until(lambda: publisher.stats().sent == 200)
    await publisher.aclose()

    _assert_once_in_order(broker.delivered(), before + during)


async def test_a_rejected_batch_is_split_and_only_the_culprit_dead_lettered(
    tmp_path: Path,
) -> None:
    broker = FakeBroker()
    events = session_events("a", 60)
    culprit = events[30].id
    broker.reject = lambda m: MessageSizeTooLargeError() if m.event_id == culprit else None
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    for event in events:  # queued before start: they leave in one batch
        publisher.publish(event)
    await publisher.start()
    await _until(lambda: publisher.stats().sent == 59)
    await publisher.aclose()

    _assert_once_in_order(broker.delivered(), [e for e in events if e.id != culprit])
    stats = publisher.stats()
    assert (stats.failed, stats.dropped) == (1, 0)
    [dead] = [r for p in (tmp_path / DEAD_LETTER_DIR).iterdir() for r in iter_file(p.read_bytes())]
    assert dead.message.event_id == culprit
    assert "MessageSizeTooLargeError" in dead.reason


async def test_an_event_over_the_size_limit_is_dead_lettered_not_sent(tmp_path: Path) -> None:
    broker = FakeBroker()
    [huge] = session_events("big", 1, text_bytes=MAX_EVENT_BYTES)
    small = session_events("small", 5)
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await publisher.start()
    publisher.publish(huge)
    for event in small:
        publisher.publish(event)
    await publisher.aclose()

    _assert_once_in_order(broker.delivered(), small)
    assert publisher.stats().failed == 1
    [dead] = [r for p in (tmp_path / DEAD_LETTER_DIR).iterdir() for r in iter_file(
        p.read_bytes(), max_body=4 * MAX_EVENT_BYTES)]
    assert dead.message.event_id == huge.id
    assert "too large" in dead.reason or "exceeds" in dead.reason or str(MAX_EVENT_BYTES) in (
        dead.reason)


async def test_aclose_with_the_broker_down_keeps_every_event_on_disk(tmp_path: Path) -> None:
    broker = FakeBroker(up=False)
    events = _interleave(session_events("a", 100), session_events("b", 100))
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await publisher.start()
    for event in events:
        publisher.publish(event)

    began = time.monotonic()
    await publisher.aclose(timeout=1.0)
    assert time.monotonic() - began < 1.3
    assert [r.message.event_id for r in spooled_records(tmp_path)] == [e.id for e in events]
    assert publisher.stats().dropped == 0

    broker.set_up(True)
    successor = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await successor.start()
    await _until(lambda: successor.stats().sent == 200)
    await successor.aclose()
    _assert_once_in_order(broker.delivered(), events)
    assert spooled_records(tmp_path) == []


async def test_events_published_after_aclose_are_kept_for_the_next_start(
    tmp_path: Path,
) -> None:
    broker = FakeBroker()
    events = session_events("a", 10)
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await publisher.start()
    for event in events[:5]:
        publisher.publish(event)
    await publisher.aclose()
    for event in events[5:]:  # a hook that fired late
        publisher.publish(event)
    assert [r.message.event_id for r in spooled_records(tmp_path)] == [e.id for e in events[5:]]
    publisher._spool.close()  # what process exit does: release the lock

    successor = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await successor.start()
    await _until(lambda: successor.stats().sent == 5)
    await successor.aclose()
    _assert_once_in_order(broker.delivered(), events)


async def test_metrics_count_by_type_and_survive_close(tmp_path: Path) -> None:
    broker = FakeBroker()
    registry = CollectorRegistry()
    events = session_events("a", 9)
    first = Publisher(_settings(tmp_path / "1"), registry=registry, connect=broker.connect)
    second = Publisher(_settings(tmp_path / "2"), registry=registry, connect=broker.connect)
    await first.start()
    await second.start()
    for event in events:
        first.publish(event)
    second.publish(events[0])
    await first.aclose()
    await _until(lambda: second.stats().sent == 1)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    counts = Counter(e.type for e in [*events, events[0]])
    assert len(counts) == 2
    for kind, count in counts.items():
        assert sample("turnlog_gateway_events_enqueued_total", type=kind) == count
        assert sample("turnlog_gateway_events_sent_total", type=kind) == count
        assert sample("turnlog_gateway_events_failed_total", type=kind) is None
    assert sample("turnlog_gateway_events_dropped_total") == 0
    assert sample("turnlog_gateway_produce_latency_seconds_count") == 10
    assert sample("turnlog_gateway_queue_depth") == 0
    assert sample("turnlog_gateway_spool_bytes") == 0
    await second.aclose()
    kind, count = counts.most_common(1)[0]
    assert sample("turnlog_gateway_events_sent_total", type=kind) == count


async def test_publishers_sharing_a_spool_folder_only_adopt_dead_ones(tmp_path: Path) -> None:
    broker = FakeBroker(up=False)
    ours, theirs = session_events("a", 50), session_events("b", 50)
    settings = _settings(tmp_path, adopt_interval=0.05)
    first = Publisher(settings, registry=CollectorRegistry(), connect=broker.connect)
    second = Publisher(settings, registry=CollectorRegistry(), connect=broker.connect)
    await first.start()
    await second.start()
    for mine, other in zip(ours, theirs, strict=True):
        first.publish(mine)
        second.publish(other)
    await _until(lambda: first.stats().spooled == 50 and second.stats().spooled == 50)
    await asyncio.sleep(0.3)  # several adoption scans: the other's files are locked

    assert (first.stats().adopted_segments, second.stats().adopted_segments) == (0, 0)
    await first.aclose(timeout=0.3)  # broker down: its files stay, unlocked
    broker.set_up(True)
    await _until(lambda: second.stats().sent == 100)  # its own, then the adopted ones
    await second.aclose()

    assert second.stats().adopted_segments >= 1
    _assert_once_in_order(broker.delivered(), ours + theirs)
    assert spooled_records(tmp_path) == []


async def test_something_that_is_not_an_event_fails_alone(tmp_path: Path) -> None:
    broker = FakeBroker()
    events = session_events("a", 10)
    publisher = Publisher(_settings(tmp_path), registry=CollectorRegistry(),
                          connect=broker.connect)
    await publisher.start()
    for event in events[:5]:
        publisher.publish(event)
    publisher.publish(None)  # type: ignore[arg-type]
    for event in events[5:]:
        publisher.publish(event)
    await publisher.aclose()

    _assert_once_in_order(broker.delivered(), events)
    assert (publisher.stats().failed, publisher.stats().dropped) == (1, 0)


async def test_start_fails_only_for_an_unusable_spool_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spool folder should be")
    publisher = Publisher(_settings(blocker / "spool"), registry=CollectorRegistry(),
                          connect=FakeBroker(up=False).connect)

    with pytest.raises(PublisherError, match="is unusable"):
        await publisher.start()
    await publisher.aclose(timeout=0.2)
