"""CloudEvents through the real broker: produced with aiokafka, read back, validated."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import Topics
from turnlog.schemas import (
    EVENTS_TOPIC,
    MAX_EVENT_BYTES,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    ConversationItemAdded,
    SessionStarted,
    UserTranscribed,
    agent_source,
    decode,
    encode,
    new_event,
)

pytestmark = pytest.mark.integration

PRODUCER_LIMIT = 2 * 1024 * 1024  # aiokafka's default max_request_size is exactly 1 MiB


def conversation(session_id: str, room: str) -> list[CloudEvent[Any]]:
    """A short session: started, two interims and a final, the committed user turn."""
    source = agent_source("tutor", "worker-1")
    payloads = [
        SessionStarted(job_id="job-1", agent_name="tutor", worker_id="worker-1"),
        UserTranscribed(turn_id="t1", transcript="what is", is_final=False),
        UserTranscribed(turn_id="t1", transcript="what is the capital", is_final=False),
        UserTranscribed(turn_id="t1", transcript="what is the capital of france",
                        is_final=True, language="en"),
        ConversationItemAdded(turn_id="t1", item_id="item-1", role="user",
                              text="what is the capital of france"),
    ]
    return [
        new_event(p, session_id=session_id, sequence=i, source=source, subject=room)
        for i, p in enumerate(payloads, start=1)
    ]


async def produce(bootstrap: str, topic: str, events: list[CloudEvent[Any]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        compression_type="zstd", max_request_size=PRODUCER_LIMIT,
    )
    await producer.start()
    try:
        sends = [
            await producer.send(
                topic, encode(e), key=e.partitionkey.encode(),
                headers=[("content-type", STRUCTURED_CONTENT_TYPE.encode())],
            )
            for e in events
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_bytes=4 * PRODUCER_LIMIT,
        max_partition_fetch_bytes=PRODUCER_LIMIT,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=1000)
                records += [r for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return records


def test_events_round_trip_one_partition_per_session(
    kafka_bootstrap: str, topics: Topics
) -> None:
    topic = topics.name(EVENTS_TOPIC)
    sent = conversation("sess-a", "room-a") + conversation("sess-b", "room-b")

    asyncio.run(produce(kafka_bootstrap, topic, sent))
    records = asyncio.run(consume(kafka_bootstrap, topic, len(sent)))

    by_session: dict[str, list[Any]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode(record.value)
        assert record.key == event.partitionkey.encode()
        assert dict(record.headers)["content-type"] == STRUCTURED_CONTENT_TYPE.encode()
        by_session[event.sessionid].append((record.partition, event))
    for session_id in ("sess-a", "sess-b"):
        received = by_session[session_id]
        assert len({partition for partition, _ in received}) == 1
        assert [e for _, e in received] == [e for e in sent if e.sessionid == session_id]
        assert [e.sequence for _, e in received] == [1, 2, 3, 4, 5]


def test_largest_allowed_event_is_accepted_by_the_topic(
    kafka_bootstrap: str, topics: Topics
) -> None:
    topic = topics.name(EVENTS_TOPIC)
    overhead = len(encode(_item("x", "")))
    event = _item("sess-big", "a" * (MAX_EVENT_BYTES - overhead - len("sess-big") * 2))
    body = encode(event)
    assert MAX_EVENT_BYTES - 100 < len(body) <= MAX_EVENT_BYTES

    asyncio.run(produce(kafka_bootstrap, topic, [event]))
    [record] = asyncio.run(consume(kafka_bootstrap, topic, 1))

    assert decode(record.value) == event


def _item(session_id: str, text: str) -> CloudEvent[Any]:
    return new_event(
        ConversationItemAdded(item_id="i", role="assistant", text=text),
        session_id=session_id, sequence=1, source=agent_source("tutor", "w"), subject="r",
    )
