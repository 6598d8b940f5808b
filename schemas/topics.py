"""Kafka topics of Turnlog: names, partitions and configs, for whoever creates them.

Replication factor 1: the local stack runs a single broker. Every topic is keyed by
session id, so a session's records stay ordered within one partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from turnlog.schemas.codec import MAX_EVENT_BYTES

EVENTS_TOPIC: Final = "turnlog.events"
TURNS_TOPIC: Final = "turnlog.turns"
SESSIONS_TOPIC: Final = "turnlog.sessions"
DLQ_TOPIC: Final = "turnlog.events.dlq"
DERIVED_STATE_TOPIC: Final = "turnlog.streams.derived-state"
"""The derived projector's changelog: per-session fold state and per-partition position,
in the events' partition numbers (see `streams.derived_changelog`)."""
KEYS_TOPIC: Final = "turnlog.keys"
"""Wrapped data keys (`turnlog.key.issued.v1`), compacted by key id; erasure tombstones."""
ERASURES_TOPIC: Final = "turnlog.erasures"
"""The erasure audit trail (`turnlog.erasure.completed.v1`), kept forever."""

KEY_COMPACTION_LAG_MS: Final = 60 * 60 * 1000
"""1 hour: how long a record of `turnlog.keys` may wait before the log cleaner compacts it
(`segment.ms` and `max.compaction.lag.ms`). An erased key's wrapped copy is gone from the
topic's files within about twice this, plus the cleaner's back-off."""
TOMBSTONE_RETENTION_MS: Final = 24 * 60 * 60 * 1000
"""1 day: how long a tombstone of `turnlog.keys` stays, so every consumer sees it."""

MAX_MESSAGE_BYTES: Final = 2 * MAX_EVENT_BYTES
"""`max.message.bytes` of the event topics: a record batch holding one event of
`MAX_EVENT_BYTES` also carries its key, headers and batch overhead, so 1 MiB is not enough.
Producers must raise their request size to match (aiokafka's `max_request_size` defaults to
exactly 1 MiB)."""

DLQ_MAX_MESSAGE_BYTES: Final = 8 * MAX_EVENT_BYTES
"""`max.message.bytes` of the DLQ: room for a rejected body of a few MiB (anything the events
topic accepted, or an oversized body a producer set aside) plus the reason headers."""

TURNS_RETENTION_MS: Final = 30 * 24 * 60 * 60 * 1000
"""30 days. `turnlog.turns` is derived: it can be rebuilt from `turnlog.events` at any
time, and the turns read model in ClickHouse keeps the history, so it need not grow
forever."""

_UNLIMITED: Final = "-1"


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like: name, partition count, replication and configs."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


DLQ_RETENTION_MS: Final = 30 * 24 * 60 * 60 * 1000
"""30 days: a dead letter is evidence to look at, not an archive; it holds the same sealed
personal fields as the log, so it should not outlive the need."""


def topic_specs(
    prefix: str = "",
    *,
    key_compaction_lag_ms: int = KEY_COMPACTION_LAG_MS,
    log_retention_ms: int | None = None,
    dlq_retention_ms: int | None = DLQ_RETENTION_MS,
) -> list[TopicSpec]:
    """The seven topics, each name prefixed with `prefix` (e.g. a test run's id);
    `key_compaction_lag_ms` bounds how long an erased key survives in `turnlog.keys`;
    `log_retention_ms` and `dlq_retention_ms` are the retention periods of the log and the
    DLQ (None: unlimited)."""
    return [
        _spec(
            prefix + EVENTS_TOPIC,
            partitions=12,
            configs={
                "cleanup.policy": "delete",
                # the log is the source of truth: unlimited unless a retention is set
                "retention.ms": _ms(log_retention_ms),
                "retention.bytes": _UNLIMITED,
                "max.message.bytes": str(MAX_MESSAGE_BYTES),
            },
        ),
        _spec(
            prefix + TURNS_TOPIC,
            partitions=12,
            configs={
                "cleanup.policy": "delete",
                "retention.ms": str(TURNS_RETENTION_MS),
                "retention.bytes": _UNLIMITED,
                "max.message.bytes": str(MAX_MESSAGE_BYTES),
            },
        ),
        _spec(
            prefix + SESSIONS_TOPIC,
            partitions=12,
            configs={
                "cleanup.policy": "compact",  # the latest summary per session id
                "max.message.bytes": str(MAX_MESSAGE_BYTES),
            },
        ),
        _spec(
            prefix + DLQ_TOPIC,
            partitions=3,
            configs={
                "cleanup.policy": "delete",
                "retention.ms": _ms(dlq_retention_ms),
                "retention.bytes": _UNLIMITED,
                "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
            },
        ),
        _spec(
            prefix + DERIVED_STATE_TOPIC,
            partitions=12,  # partition p holds the state of the events' partition p
            configs={
                "cleanup.policy": "compact",  # the latest state per key; deleted keys go
                "max.message.bytes": str(MAX_MESSAGE_BYTES),  # one buffered event fits
            },
        ),
        _spec(
            prefix + KEYS_TOPIC,
            partitions=3,
            configs={
                "cleanup.policy": "compact",  # the latest record per key id
                "segment.ms": str(key_compaction_lag_ms),
                "max.compaction.lag.ms": str(key_compaction_lag_ms),
                "min.cleanable.dirty.ratio": "0.01",
                "delete.retention.ms": str(TOMBSTONE_RETENTION_MS),
                "file.delete.delay.ms": "1000",
            },
        ),
        _spec(
            prefix + ERASURES_TOPIC,
            partitions=1,
            configs={
                "cleanup.policy": "delete",
                "retention.ms": _UNLIMITED,  # proof for an auditor: keep it
                "retention.bytes": _UNLIMITED,
            },
        ),
    ]


def _ms(value: int | None) -> str:
    return _UNLIMITED if value is None else str(value)


def _spec(name: str, *, partitions: int, configs: dict[str, str]) -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=partitions,
        replication_factor=1,
        configs=MappingProxyType(configs),
    )
