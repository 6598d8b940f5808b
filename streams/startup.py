"""What the worker does besides consuming: check the topics, serve metrics and the
analysts' query endpoint. A failure waiting may fix is a `DependencyUnavailableError`;
one it cannot is a `StartupError` that says what to do."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server

from turnlog.projections.clickhouse.query_endpoint import QueryEndpoint
from turnlog.projections.clickhouse.store import AnalyticsStore, AnalyticsStoreError, ChdbStore
from turnlog.schemas.topics import DLQ_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
from turnlog.streams.config import StreamsSettings
from turnlog.streams.errors import DependencyUnavailableError, StartupError

logger = logging.getLogger("turnlog.streams.startup")

FETCH_BYTES = 2 * MAX_MESSAGE_BYTES
PRODUCE_BYTES = DLQ_MAX_MESSAGE_BYTES + 512 * 1024
"""Producer request limit: a DLQ record of up to 8 MiB plus headers."""


async def verify_topics(settings: StreamsSettings, topics: Sequence[str] | None = None) -> None:
    """Every topic of `topics` (default: all the worker's) exists; the worker never
    creates topics, the launcher does. Kafka unreachable or a topic missing (the launcher
    may be creating them) is `DependencyUnavailableError`: the worker waits."""
    wanted = list(settings.topics if topics is None else topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=10_000)  # fmt: skip
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    except (KafkaError, OSError) as error:
        raise DependencyUnavailableError(
            f"Kafka at {settings.kafka_bootstrap} does not answer ({error!r}); "
            "is the stack up? (`turnlog stack up`)",
            dependency=f"Kafka at {settings.kafka_bootstrap}",
        ) from error
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    missing = [name for name in wanted if name not in existing]
    if missing:
        raise DependencyUnavailableError(
            f"missing Kafka topics {', '.join(missing)}: the worker does not create topics; "
            "run `turnlog stack up` (it creates them from schemas/topics.py)",
            dependency="the topics",
        )


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
