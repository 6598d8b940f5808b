"""Reading the log for a rebuild: offset ranges of the events topic by manual assignment
(no consumer group, no commits: the worker's group is untouched), and the progress bar."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from turnlog.streams.decoding import raw_record
from turnlog.streams.rebuild.plan import RebuildError, RebuildRefusedError
from turnlog.streams.records import RawRecord
from turnlog.streams.startup import FETCH_BYTES

Offsets = dict[int, int]
"""Partition -> offset."""
Ranges = dict[int, tuple[int, int]]
"""Partition -> [start, stop) of offsets."""

STALL_SECONDS: Final = 60.0
"""A range whose partition yields nothing for this long is an error (the log is shorter
than the offsets said: a deleted topic, a truncated log)."""


def lowest(*limits: Mapping[int, int]) -> Offsets:
    """Per partition of the first mapping, the lowest of the limits (absent counts 0)."""
    return {p: min(limit.get(p, 0) for limit in limits) for p in limits[0]}


def ranges_between(start: Mapping[int, int], stop: Mapping[int, int]) -> Ranges:
    """Per partition of `stop`, from `start` (absent: 0) to `stop`; empty when behind."""
    return {p: (start.get(p, 0), max(start.get(p, 0), s)) for p, s in stop.items()}


class OffsetProgress:
    """Progress through ranges, counted in offsets, so gaps in a partition (transaction
    markers) count once the consumer has passed them."""

    def __init__(self, ranges: Mapping[int, tuple[int, int]]) -> None:
        self.ranges = {p: (a, b) for p, (a, b) in ranges.items() if b > a}
        self.next = {p: a for p, (a, _) in self.ranges.items()}

    @property
    def total(self) -> int:
        return sum(b - a for a, b in self.ranges.values())

    @property
    def completed(self) -> int:
        return sum(self.next[p] - a for p, (a, _) in self.ranges.items())

    def advance(self, records: Iterable[RawRecord]) -> int:
        """Count `records` as read; returns how many offsets that completed."""
        before = self.completed
        for r in records:
            bounds = self.ranges.get(r.partition)
            if bounds is not None and bounds[0] <= r.offset < bounds[1]:
                self.next[r.partition] = max(self.next[r.partition], r.offset + 1)
        return self.completed - before

    def finish(self, partition: int) -> None:
        """The consumer has passed the end of `partition`'s range."""
        if partition in self.ranges:
            self.next[partition] = self.ranges[partition][1]



async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition ids of `topic`; `RebuildRefusedError` when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise RebuildRefusedError(f"Kafka at {bootstrap} has no topic {topic}")
    return sorted(int(p["partition"]) for p in described["partitions"])


class LogReader:
    """Offset ranges of one topic's partitions, in batches."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False,
            max_partition_fetch_bytes=FETCH_BYTES,
        )  # fmt: skip

    async def start(self) -> tuple[Offsets, Offsets]:
        """Connect; the first and the end offset of every partition (the snapshot)."""
        try:
            partitions = await topic_partitions(self.bootstrap, self.topic)
            await self._consumer.start()
            tps = [TopicPartition(self.topic, p) for p in partitions]
            first = await self._consumer.beginning_offsets(tps)
            end = await self._consumer.end_offsets(tps)
        except (KafkaError, OSError) as error:
            await self._consumer.stop()
            raise RebuildRefusedError(
                f"Kafka at {self.bootstrap} does not answer ({error}); is the stack up?"
            ) from error
        return (
            {tp.partition: int(o) for tp, o in first.items()},
            {tp.partition: int(o) for tp, o in end.items()},
        )

    async def stop(self) -> None:
        await self._consumer.stop()

    async def batches(
        self, ranges: Ranges, size: int, progress: OffsetProgress
    ) -> AsyncIterator[list[RawRecord]]:
        """The records of `ranges` in batches of up to `size` (several partitions each);
        `progress` learns when a partition's range is done."""
        consumer = self._consumer
        todo = {TopicPartition(self.topic, p): b for p, (a, b) in ranges.items() if b > a}
        if not todo:
            return
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, ranges[tp.partition][0])
        batch: list[RawRecord] = []
        last_fetch = time.monotonic()
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=200, max_records=size - len(batch))
            for tp, messages in fetched.items():
                stop = todo.get(tp, -1)
                batch.extend(raw_record(m) for m in messages if m.offset < stop)
            for tp in [tp for tp, stop in todo.items() if await consumer.position(tp) >= stop]:
                del todo[tp]
                consumer.pause(tp)
                progress.finish(tp.partition)
            if fetched:
                last_fetch = time.monotonic()
            elif time.monotonic() - last_fetch > STALL_SECONDS:
                stuck = ", ".join(f"{tp.partition} before {stop}" for tp, stop in todo.items())
                raise RebuildError(f"the log {self.topic} stopped short: partitions {stuck}")
            if len(batch) >= size or (batch and (not fetched or not todo)):
                yield batch
                batch = []


class RateColumn(ProgressColumn):
    """Events per second, as rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:>7,.0f}/s" if speed else "      -/s")


def progress_bar(console: Console) -> Progress:
    """events read / total, rate, ETA."""
    return Progress(
        TextColumn("{task.description:<22}"), BarColumn(bar_width=30), MofNCompleteColumn(),
        TextColumn("events"), RateColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console,
    )  # fmt: skip
