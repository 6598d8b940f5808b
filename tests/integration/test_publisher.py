"""The publisher against the real local broker: exact delivery, order, partitioning,
headers, metrics, the largest event, and an event the topic refuses."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from tests.conftest import Topics, unique
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.agent_gateway.publisher.spool import DEAD_LETTER_DIR
from turnlog.agent_gateway.publisher.spool_format import iter_file
from turnlog.agent_gateway.publisher.testing import session_events
from turnlog.schemas import (
    EVENTS_TOPIC,
    MAX_EVENT_BYTES,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    ConversationItemAdded,
    decode,
    new_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

FETCH_BYTES = 4 * MAX_EVENT_BYTES


async def consume(bootstrap: str, topic: str, count: int, *, settle: float = 1.0) -> list[Any]:
    """`count` records, then whatever else arrives within `settle` seconds (duplicates)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_bytes=FETCH_BYTES,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batches.values() for r in rs]
        batches = await consumer.getmany(timeout_ms=int(settle * 1000))
        records += [r for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return records


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _assert_once_in_order(records: list[Any], sent: list[CloudEvent[Any]]) -> None:
    by_session: dict[str, list[tuple[int, int]]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode(record.value)
        assert record.key == event.partitionkey.encode()
        assert dict(record.headers)["content-type"] == STRUCTURED_CONTENT_TYPE.encode()
        by_session.setdefault(event.sessionid, []).append((record.partition, event.sequence))
    expected: dict[str, list[int]] = {}
    for event in sent:
        expected.setdefault(event.sessionid, []).append(event.sequence)
    assert {s: [seq for _, seq in got] for s, got in by_session.items()} == expected
    assert all(len({p for p, _ in got}) == 1 for got in by_session.values())


def _settings(bootstrap: str, topic: str, spool: Path) -> PublisherSettings:
    return PublisherSettings(bootstrap_servers=bootstrap, topic=topic, spool_dir=spool)


async def test_sessions_arrive_once_in_order_with_metrics(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    topic = topics.name(EVENTS_TOPIC)
    sessions = [session_events(f"sess-{n}", 120) for n in range(5)]
    events = [e for group in zip(*sessions, strict=True) for e in group]
    registry = CollectorRegistry()
    publisher = Publisher(_settings(kafka_bootstrap, topic, tmp_path), registry=registry)
    await publisher.start()
    for event in events:
        publisher.publish(event)
    await _until(lambda: publisher.stats().sent == len(events))
    await publisher.aclose()

    records = await consume(kafka_bootstrap, topic, len(events))
    assert len(records) == len(events)
    _assert_once_in_order(records, events)
    stats = publisher.stats()
    assert (stats.enqueued, stats.sent, stats.failed, stats.dropped) == (600, 600, 0, 0)
    item_type = events[0].type
    expected_items = sum(1 for e in events if e.type == item_type)
    assert registry.get_sample_value(
        "turnlog_gateway_events_sent_total", {"type": item_type}) == expected_items
    assert registry.get_sample_value("turnlog_gateway_events_dropped_total") == 0
    assert registry.get_sample_value("turnlog_gateway_produce_latency_seconds_count") == 600
    assert registry.get_sample_value("turnlog_gateway_spool_bytes") == 0


async def test_the_largest_event_goes_through(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    topic = topics.name(EVENTS_TOPIC)
    [probe] = session_events("big", 1, text_bytes=10)
    overhead = len(probe.model_dump_json()) - 10
    [largest] = session_events("big", 1, text_bytes=MAX_EVENT_BYTES - overhead - 64)
    small = session_events("small", 3)
    publisher = Publisher(_settings(kafka_bootstrap, topic, tmp_path),
                          registry=CollectorRegistry())
    await publisher.start()
    for event in [largest, *small]:
        publisher.publish(event)
    await _until(lambda: publisher.stats().sent == 4)
    await publisher.aclose()

    records = await consume(kafka_bootstrap, topic, 4)
    _assert_once_in_order(records, [largest, *small])
    assert publisher.stats().failed == 0


async def test_an_event_the_topic_refuses_is_dead_lettered_and_the_rest_flows(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = unique("test-") + ".small-messages"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1, topic_configs={
            "max.message.bytes": str(64 * 1024)})])
        events = session_events("a", 40)
        refused = new_event(  # random text: compression cannot bring it under the limit
            ConversationItemAdded(item_id="big", role="user", text=secrets.token_hex(100_000)),
            session_id="a", sequence=41, source=events[0].source, subject=events[0].subject,
        )
        after = session_events("a", 20, start=42)
        publisher = Publisher(_settings(kafka_bootstrap, topic, tmp_path),
                              registry=CollectorRegistry())
        for event in [*events, refused, *after]:  # one burst: they share a batch
            publisher.publish(event)
        await publisher.start()
        await _until(lambda: publisher.stats().sent + publisher.stats().failed == 61)
        await publisher.aclose()

        records = await consume(kafka_bootstrap, topic, 60)
        _assert_once_in_order(records, [*events, *after])
        assert (publisher.stats().failed, publisher.stats().dropped) == (1, 0)
        [dead] = [r for p in (tmp_path / DEAD_LETTER_DIR).iterdir()
                  for r in iter_file(p.read_bytes())]
        assert dead.message.event_id == refused.id
        assert "MessageSizeTooLarge" in dead.reason
    finally:
        await admin.delete_topics([topic])
        await admin.close()
