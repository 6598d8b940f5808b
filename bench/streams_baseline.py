"""The baseline consumer of the streams benchmark: a plain aiokafka consumer loop doing
what the streams worker does, without Faust or the worker's engine.

    TURNLOG_... .venv/bin/python -m bench.streams_baseline

Same settings (`streams.config`, from the environment), same sinks and processor
(`streams.startup.open_sinks`: PostgreSQL, ClickHouse, journal, one sink thread), same
query endpoint (the benchmark reads ClickHouse positions through it). Batching, by
`TURNLOG_BENCH_TAKE`: `greedy` (the benchmark's `baseline` consumer), whatever has been
fetched, up to `batch_size`, waiting up to `batch_within` only while nothing has; `take`
(the `take` consumer), as `stream.take_events(batch_size, within=batch_within)`: wait up
to `batch_within` seconds for `batch_size` records, then process what came. No
pipelining: fetch, process, publish, commit, in turn. Derived records and dead letters
are produced and awaited before the offsets are committed (at-least-once). Stops on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from turnlog.streams.config import StreamsSettings, load_streams_settings
from turnlog.streams.processor import BatchOutcome
from turnlog.streams.rebuild.log import raw_record
from turnlog.streams.records import OutRecord, RawRecord
from turnlog.streams.startup import (
    FETCH_BYTES,
    PRODUCE_BYTES,
    Sinks,
    open_sinks,
    start_query_endpoint,
    verify_topics,
)

logger = logging.getLogger("turnlog.bench.baseline")


async def take(consumer: AIOKafkaConsumer, size: int, within: float) -> list[RawRecord]:
    """Up to `size` records, waiting at most `within` seconds for them."""
    deadline = time.monotonic() + within
    batch: list[RawRecord] = []
    while len(batch) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        fetched = await consumer.getmany(timeout_ms=int(left * 1000) + 1,
                                         max_records=size - len(batch))  # fmt: skip
        batch.extend(raw_record(m) for messages in fetched.values() for m in messages)
    return batch


async def take_greedy(consumer: AIOKafkaConsumer, size: int, within: float) -> list[RawRecord]:
    """What has been fetched, up to `size`; waits up to `within` only for the first."""
    fetched = await consumer.getmany(timeout_ms=int(within * 1000), max_records=size)
    batch = [raw_record(m) for messages in fetched.values() for m in messages]
    while batch and len(batch) < size:
        more = await consumer.getmany(timeout_ms=0, max_records=size - len(batch))
        if not more:
            break
        batch.extend(raw_record(m) for messages in more.values() for m in messages)
    return batch


async def publish(producer: AIOKafkaProducer, outputs: list[OutRecord]) -> None:
    sent = [await producer.send(out.topic, key=out.key, value=out.value,
                                headers=list(out.headers)) for out in outputs]  # fmt: skip
    await asyncio.gather(*sent)


async def consume(settings: StreamsSettings, stop: asyncio.Event) -> None:
    await verify_topics(settings)
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog-sinks")
    sinks: Sinks = await loop.run_in_executor(executor, open_sinks, settings)
    endpoint = await loop.run_in_executor(executor, start_query_endpoint, settings, sinks.store)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
        compression_type="lz4", max_request_size=PRODUCE_BYTES, max_batch_size=256 * 1024,
    )  # fmt: skip
    consumer = AIOKafkaConsumer(
        settings.events_topic, bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.consumer_group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=FETCH_BYTES,
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    batches = take if os.environ.get("TURNLOG_BENCH_TAKE") == "take" else take_greedy
    try:
        while not stop.is_set():
            batch = await batches(consumer, settings.batch_size, settings.batch_within)
            if not batch:
                continue
            outcome: BatchOutcome = await loop.run_in_executor(
                executor, sinks.processor.process, batch
            )
            await publish(producer, outcome.outputs)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        if endpoint is not None:
            endpoint.stop()
        await loop.run_in_executor(executor, sinks.processor.close)
        executor.shutdown()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = load_streams_settings()

    async def run() -> None:
        stop = asyncio.Event()
        loop: Any = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await consume(settings, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
