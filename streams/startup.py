"""What the worker does before it consumes: check the topics, open the sinks (on the sink
thread), finish a ClickHouse write a crash left unfinished, serve metrics and the
analysts' query endpoint. Each failure is a `StartupError` that says what to do."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server

from turnlog.projections.clickhouse.migrate import migrate_clickhouse
from turnlog.projections.clickhouse.query_endpoint import QueryEndpoint
from turnlog.projections.clickhouse.store import (
    AnalyticsStore,
    AnalyticsStoreError,
    ChdbStore,
    connect,
)
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.errors import ProjectionWriteError
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import SchemaError, decode
from turnlog.schemas.topics import DLQ_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
from turnlog.streams.config import StreamsSettings, redact_url
from turnlog.streams.errors import StartupError
from turnlog.streams.journal import PendingWrite, WriteJournal
from turnlog.streams.processor import BatchProcessor
from turnlog.streams.state import PostgresState

logger = logging.getLogger("turnlog.streams.startup")

FETCH_BYTES = 2 * MAX_MESSAGE_BYTES
PRODUCE_BYTES = DLQ_MAX_MESSAGE_BYTES + 512 * 1024
"""Producer request limit: a DLQ record of up to 8 MiB plus headers."""


async def verify_topics(settings: StreamsSettings) -> None:
    """Every topic exists (the worker never creates topics: the launcher does)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    except (KafkaError, OSError) as error:
        raise StartupError(
            f"Kafka at {settings.kafka_bootstrap} does not answer ({error}); "
            "is the stack up? (`turnlog stack up`)"
        ) from error
    finally:
        await admin.close()
    missing = [name for name in settings.topics if name not in existing]
    if missing:
        raise StartupError(
            f"missing Kafka topics {', '.join(missing)}: the worker does not create topics; "
            "run `turnlog stack up` (it creates them from schemas/topics.py)"
        )


@dataclass
class Sinks:
    """The opened sinks, owned by the sink thread."""

    processor: BatchProcessor
    store: AnalyticsStore
    clickhouse: ClickHouseProjection
    journal: WriteJournal


def open_sinks(settings: StreamsSettings) -> Sinks:
    """Open PostgreSQL and ClickHouse; call it on the sink thread."""
    dsn = settings.postgres_dsn.get_secret_value()
    postgres = PostgresProjection(
        dsn, schema=settings.postgres_schema, consumer=settings.consumer_group
    )
    try:
        postgres.committed_offsets(settings.events_topic)
    except ProjectionWriteError as error:
        postgres.close()
        raise StartupError(
            f"PostgreSQL {redact_url(dsn)} schema {settings.postgres_schema!r} is not usable "
            f"({error}); is it migrated? (`turnlog stack up` migrates it)"
        ) from error
    try:
        store = connect(settings.analytics_url)
        migrate_clickhouse(store, database=settings.clickhouse_database)
    except AnalyticsStoreError as error:
        postgres.close()
        raise StartupError(f"ClickHouse {redact_url(settings.analytics_url)}: {error}") from error
    clickhouse = ClickHouseProjection(store, database=settings.clickhouse_database)
    journal = WriteJournal(
        settings.data_dir / f"clickhouse-journal-{settings.consumer_group}.json",
        database=settings.clickhouse_database,
    )
    processor = BatchProcessor(
        postgres, clickhouse,
        state=PostgresState(dsn, schema=settings.postgres_schema),
        topic_prefix=settings.topic_prefix,
        journal=journal,
    )  # fmt: skip
    return Sinks(processor, store, clickhouse, journal)


async def fetch_pending(settings: StreamsSettings, pending: PendingWrite) -> list[SourceRecord]:
    """The records of an unfinished ClickHouse write, read again from Kafka."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    await consumer.start()
    records: list[SourceRecord] = []
    try:
        for (topic, partition), runs in sorted(pending.offsets.items()):
            wanted = pending.offset_set(topic, partition)
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, runs[0][0])
            end = (await consumer.end_offsets([tp]))[tp]
            records.extend(await _read_offsets(consumer, tp, wanted, min(runs[-1][1] + 1, end)))
    finally:
        await consumer.stop()
    return records


async def _read_offsets(
    consumer: AIOKafkaConsumer, tp: TopicPartition, wanted: set[int], stop: int
) -> list[SourceRecord]:
    found: list[SourceRecord] = []
    while await consumer.position(tp) < stop:
        batches: dict[Any, list[Any]] = await consumer.getmany(tp, timeout_ms=1000)
        for message in batches.get(tp, []):
            if message.offset in wanted:
                try:
                    event = decode(message.value or b"")
                except SchemaError:
                    continue  # it was not in the write either
                found.append(SourceRecord(tp.topic, tp.partition, message.offset, event))
    return found


def start_metrics_server(settings: StreamsSettings, registry: CollectorRegistry) -> Any:
    """Serve `/metrics` on the configured loopback address; None when the port is 0."""
    if settings.metrics_port == 0:
        return None
    try:
        server, _thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as error:
        raise StartupError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"({error}); set TURNLOG_STREAMS_METRICS_PORT"
        ) from error
    logger.info("serving metrics at http://%s:%d/metrics", settings.metrics_host,
                settings.metrics_port)
    return server


def start_query_endpoint(settings: StreamsSettings, store: AnalyticsStore) -> QueryEndpoint | None:
    """Serve analysts' queries when this worker owns a chDB folder (a ClickHouse server
    serves them itself)."""
    if not isinstance(store, ChdbStore):
        return None
    token = settings.query_token.get_secret_value() if settings.query_token else None
    endpoint = QueryEndpoint(
        store, token=token, database=settings.clickhouse_database, port=settings.query_port
    )
    try:
        endpoint.start()
    except (OSError, AnalyticsStoreError) as error:
        raise StartupError(
            f"cannot serve analyst queries on {settings.query_host}:{settings.query_port} "
            f"({error}); set TURNLOG_STREAMS_QUERY_PORT"
        ) from error
    return endpoint
