"""What flows through the processor: raw records in, dead letters and records to send out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

Headers = tuple[tuple[str, bytes], ...]

STAGE_DECODE: Final = "decode"
STAGE_POSTGRES: Final = "postgres"
STAGE_CLICKHOUSE: Final = "clickhouse"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as consumed, before decoding: Faust's `event.message`, an aiokafka
    `ConsumerRecord`, or a line of a recorded log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp: float | None = None
    """Kafka's record timestamp, seconds since the epoch."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be decoded or projected, and why."""

    record: RawRecord
    reason: str
    """Short machine-readable reason: a `SchemaError.reason` (`malformed`, `unknown_type`,
    `invalid_payload`, `unsupported_specversion`, `too_large`), or `unhandled_type` (the
    PostgreSQL projection has no rows for a catalog type), or `projection_failed`."""
    exception: str
    """Class name of the exception."""
    message: str
    """The exception's message (from our own code: no secrets, inputs truncated)."""
    stage: str
    """Where it failed: `decode`, `postgres` or `clickhouse`."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce: a dead letter or a derived record."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()
