"""A real tutor session recorded while Kafka is down: every event arrives once, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.faults.conftest import IsolatedBroker
from tests.integration.test_gateway_session import by_session, check_turns, consume, record_lessons
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings

pytestmark = pytest.mark.faults


async def drain(bootstrap: str, topic: str, spool: Path, expected: int) -> int:
    """A new publisher on the same spool folder adopts the files and delivers them."""
    publisher = Publisher(
        PublisherSettings(bootstrap_servers=bootstrap, topic=topic, spool_dir=spool),
        registry=CollectorRegistry(),
    )
    await publisher.start()
    try:
        async with asyncio.timeout(60):
            while True:  # polling the sender's counters: there is no event to wait on
                if publisher.stats().sent >= expected:
                    break
                await asyncio.sleep(0.05)
    finally:
        await publisher.aclose(timeout=10)
    return publisher.stats().sent


def test_sessions_recorded_with_the_broker_down_arrive_once_in_order(
    isolated_kafka: IsolatedBroker, tmp_path: Path
) -> None:
    topic = isolated_kafka.new_topic()
    spool = tmp_path / "spool"
    isolated_kafka.stop()
    try:
        lessons, stats = asyncio.run(record_lessons(isolated_kafka.bootstrap, topic, spool))
    finally:
        isolated_kafka.start()
    total = sum(len(lesson.expected) for lesson in lessons)

    assert (stats.sent, stats.dropped, stats.failed) == (0, 0, 0)
    assert stats.spooled == total  # the voice sessions ran; every event went to disk
    assert asyncio.run(drain(isolated_kafka.bootstrap, topic, spool, total)) == total

    grouped = by_session(asyncio.run(consume(isolated_kafka.bootstrap, topic, total)))
    assert sum(len(received) for received in grouped.values()) == total  # none twice
    for lesson in lessons:
        events = [event for _, event in grouped[lesson.session_id]]
        assert [e.type for e in events] == lesson.expected, lesson.room
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        check_turns(events, lesson)
