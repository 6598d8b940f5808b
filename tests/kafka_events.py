"""Reading a test's events back from Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from turnlog.schemas import CloudEvent, decode

Events = list[CloudEvent[Any]]


async def read_events(bootstrap: str, topic: str, *, until: Callable[[Events], bool],
                      keep: Callable[[CloudEvent[Any]], bool] = lambda e: True,
                      within: float = 30, linger: float = 1.0) -> Events:  # fmt: skip
    """The topic's events that `keep` selects, in partition order, read from the start
    until `until` holds, then for `linger` seconds more (what should not be there would
    arrive by then, in order behind what is)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    events: Events = []

    async def take(timeout_ms: int) -> None:
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        records = sorted((r for rs in batches.values() for r in rs),
                         key=lambda r: (r.partition, r.offset))  # fmt: skip
        events.extend(e for e in (decode(r.value) for r in records) if keep(e))

    try:
        async with asyncio.timeout(within):
            while not until(events):
                await take(500)
        await take(int(linger * 1000))
    finally:
        await consumer.stop()
    return events
