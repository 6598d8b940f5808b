"""The hand-tuned baseline of the streams benchmark: the least a consumer must do to put
every event into PostgreSQL and ClickHouse, to see how far the projections are from it.

    TURNLOG_... .venv/bin/python -m bench.streams_minimal

One aiokafka loop (the next batch fetched while the current one is written); per event
one `pydantic_core.from_json` of the value and a `to_json` of its `data`; per batch, on
two threads at once, one PostgreSQL transaction (COPY of one row per event into
`minimal_events (session_id, sequence, type, time, data jsonb)` plus the batch's next
offsets in `consumer_offsets`, consumer = `<group>-minimal`) and one chDB insert of the
values as published (`JSONEachRow` into `minimal_events`, then the next offsets into
`positions`). It serves the analysts' query endpoint, so the benchmark reads ClickHouse
positions the way it reads the worker's.

What it does NOT do: no schema validation or upcasting (a value that is not a JSON
object with the envelope's fields stops it), no read models (sessions, turns, messages,
metrics), no ClickHouse rollups or materialized views, no derived topics, no dead
letters, no isolation of a bad event, no retry or waiting for a dependency that is down,
no deduplication in ClickHouse (a restart between the two writes inserts a batch twice).
Settings as the worker's (`streams.config`, from the environment). Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from psycopg import sql
from pydantic_core import from_json, to_json

from turnlog.projections.clickhouse.store import AnalyticsStore, connect
from turnlog.streams.cli import GC_THRESHOLD
from turnlog.streams.config import StreamsSettings, load_streams_settings
from turnlog.streams.startup import FETCH_BYTES, start_query_endpoint, verify_topics

logger = logging.getLogger("turnlog.bench.minimal")

PROJECTION: Final = "minimal"
Row = tuple[str, int, str, str, str]
"""session_id, sequence, type, time (ISO 8601 as published), data (JSON text)."""
CH_INSERT_SETTINGS: Final = (
    "input_format_skip_unknown_fields = 1, input_format_json_read_objects_as_strings = 1, "
    "date_time_input_format = 'best_effort', async_insert = 0"
)


def event_rows(values: Iterable[bytes]) -> list[Row]:
    """The PostgreSQL rows of event values (no validation: a missing field raises)."""
    rows: list[Row] = []
    for value in values:
        event = from_json(value)
        rows.append((event["sessionid"], event["sequence"], event["type"], event["time"],
                     to_json(event["data"]).decode()))  # fmt: skip
    return rows


def next_offsets(messages: Iterable[Any]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset after its last message."""
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic, m.partition)
        offsets[key] = max(offsets.get(key, 0), m.offset + 1)
    return offsets


class PostgresSide:
    """The events table and the offsets, in one schema, on one connection."""

    def __init__(self, dsn: str, schema: str, consumer: str) -> None:
        self.consumer = consumer
        self.conn = psycopg.connect(dsn, autocommit=True)
        s = sql.Identifier(schema)
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
        self.conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.minimal_events (session_id text NOT NULL, "
            "sequence bigint NOT NULL, type text NOT NULL, time timestamptz NOT NULL, "
            "data jsonb NOT NULL, PRIMARY KEY (session_id, sequence))").format(s))  # fmt: skip
        self.conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.consumer_offsets (consumer text, topic text, "
            "partition int, next_offset bigint NOT NULL, "
            "PRIMARY KEY (consumer, topic, partition))").format(s))  # fmt: skip
        self._copy = sql.SQL(
            "COPY {}.minimal_events (session_id, sequence, type, time, data) FROM STDIN"
        ).format(s)
        self._save = sql.SQL(
            "INSERT INTO {}.consumer_offsets SELECT %s, t, p, o "
            "FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, o) "
            "ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = "
            "excluded.next_offset").format(s)  # fmt: skip
        self._load = sql.SQL(
            "SELECT topic, partition, next_offset FROM {}.consumer_offsets WHERE consumer = %s"
        ).format(s)

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.conn.execute(self._load, (self.consumer,)).fetchall()
        return {(str(t), int(p)): int(o) for t, p, o in rows}

    def write_values(self, values: Sequence[bytes], offsets: dict[tuple[str, int], int]) -> None:
        self.write(event_rows(values), offsets)

    def write(self, rows: Sequence[Row], offsets: dict[tuple[str, int], int]) -> None:
        keys = sorted(offsets)
        with self.conn.transaction(), self.conn.cursor() as cur:
            with cur.copy(self._copy) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(self._save, (self.consumer, [t for t, _ in keys],
                                     [p for _, p in keys], [offsets[k] for k in keys]))  # fmt: skip


class ClickHouseSide:
    """The raw events table and the positions, in the embedded chDB folder."""

    def __init__(self, store: AnalyticsStore, database: str) -> None:
        self.store = store
        self.db = f"`{database}`"
        store.command(f"CREATE DATABASE IF NOT EXISTS {self.db}")
        store.command(
            f"CREATE TABLE IF NOT EXISTS {self.db}.minimal_events (sessionid String, "
            "sequence UInt64, type LowCardinality(String), time DateTime64(6, 'UTC'), "
            "data String) ENGINE = MergeTree ORDER BY (sessionid, sequence)"
        )
        store.command(
            f"CREATE TABLE IF NOT EXISTS {self.db}.positions (topic String, partition "
            "UInt32, next_offset UInt64) ENGINE = MergeTree ORDER BY (topic, partition)"
        )
        self._insert = (f"INSERT INTO {self.db}.minimal_events SETTINGS {CH_INSERT_SETTINGS} "
                        "FORMAT JSONEachRow\n")  # fmt: skip

    def write(self, values: Sequence[bytes], offsets: dict[tuple[str, int], int]) -> None:
        self.store.command(self._insert + b"\n".join(values).decode())
        self.store.insert(
            f"{self.db}.positions", [(t, p, o) for (t, p), o in sorted(offsets.items())],
            column_names=("topic", "partition", "next_offset"), settings={"async_insert": 0},
        )  # fmt: skip


class _Seek(ConsumerRebalanceListener):  # type: ignore[misc]
    """Assigned partitions start at the offsets stored with the PostgreSQL rows."""

    def __init__(self, consumer: AIOKafkaConsumer, stored: dict[tuple[str, int], int]) -> None:
        self.consumer = consumer
        self.stored = stored

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Nothing to finish: a batch's writes are awaited before the next fetch ends."""

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        for tp in assigned:
            offset = self.stored.get((tp.topic, tp.partition))
            if offset is not None:
                self.consumer.seek(tp, offset)


async def gather(
    consumer: AIOKafkaConsumer, settings: StreamsSettings, writing: asyncio.Future[None] | None
) -> list[Any]:
    """Up to `batch_size` messages: what is fetched while the batch before is written, or,
    when it is done, what has been fetched (waiting `batch_within` only for a first one)."""
    size = settings.batch_size
    messages: list[Any] = []
    while len(messages) < size:
        busy = writing is not None and not writing.done()
        if messages and not busy:
            break
        wait = 0.005 if busy or messages else settings.batch_within
        fetched = await consumer.getmany(timeout_ms=int(wait * 1000),
                                         max_records=size - len(messages))  # fmt: skip
        new = [m for part in fetched.values() for m in part]
        messages.extend(new)
        if not new and not busy:
            break
    return messages


async def consume(settings: StreamsSettings, stop: asyncio.Event) -> None:
    await verify_topics(settings, [settings.events_topic])
    loop = asyncio.get_running_loop()
    pg_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minimal-pg")
    ch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minimal-ch")
    group = settings.group(PROJECTION)
    postgres: PostgresSide = await loop.run_in_executor(
        pg_thread, PostgresSide, settings.postgres_dsn.get_secret_value(),
        settings.postgres_schema, group,
    )  # fmt: skip
    store = await loop.run_in_executor(ch_thread, connect, settings.analytics_url)
    clickhouse = await loop.run_in_executor(
        ch_thread, ClickHouseSide, store, settings.clickhouse_database
    )
    endpoint = start_query_endpoint(settings, store)
    stored = await loop.run_in_executor(pg_thread, postgres.offsets)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=FETCH_BYTES,
    )  # fmt: skip
    consumer.subscribe([settings.events_topic], listener=_Seek(consumer, stored))
    await consumer.start()

    async def write(messages: list[Any]) -> None:
        values = [m.value for m in messages]
        offsets = next_offsets(messages)
        await asyncio.gather(  # decoding on the PostgreSQL thread while chDB inserts
            loop.run_in_executor(pg_thread, postgres.write_values, values, offsets),
            loop.run_in_executor(ch_thread, clickhouse.write, values, offsets),
        )

    writing: asyncio.Future[None] | None = None
    try:
        while not stop.is_set():
            messages = await gather(consumer, settings, writing)
            if not messages:
                continue
            if writing is not None:
                await writing  # one batch at a time, in order
            writing = asyncio.ensure_future(write(messages))
        if writing is not None:
            await writing
    finally:
        await consumer.stop()
        if endpoint is not None:
            endpoint.stop()
        await loop.run_in_executor(pg_thread, postgres.conn.close)
        pg_thread.shutdown()
        ch_thread.shutdown()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = load_streams_settings()
    # as the worker (streams.cli): long-lived objects out of the collector's scans, and
    # young objects collected less often (a batch keeps ~50,000 alive)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await consume(settings, stop)

    asyncio.run(run())
    from turnlog.projections.clickhouse.store import exit_past_chdb_teardown

    exit_past_chdb_teardown(0)  # chDB's threads may crash in the interpreter's teardown


if __name__ == "__main__":
    main()
