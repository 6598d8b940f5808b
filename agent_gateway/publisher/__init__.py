"""The gateway's loss-free event publisher: hooks call `Publisher.publish(event)`, which
never blocks and never drops; a sender thread produces to Kafka (idempotent, acks=all,
compressed batches, key = session id) or spools to disk while Kafka is unreachable.

Modules: `publisher` (the API and lifecycle), `handoff` (publish() to sender thread),
`sender` (routing, draining, producer lifecycle), `kafka` (the bounded aiokafka
producer), `spool`/`segment`/`spool_format` (the disk spool), `metrics` (Prometheus),
`settings`, `message`, `errors`.
"""

from __future__ import annotations

from turnlog.agent_gateway.publisher.errors import (
    BrokerUnavailableError,
    PublisherError,
    SpoolCorruptError,
    SpoolWriteError,
)
from turnlog.agent_gateway.publisher.publisher import Publisher, PublisherStats
from turnlog.agent_gateway.publisher.settings import PublisherSettings

__all__ = [
    "BrokerUnavailableError",
    "Publisher",
    "PublisherError",
    "PublisherSettings",
    "PublisherStats",
    "SpoolCorruptError",
    "SpoolWriteError",
]
