"""What travels from the hook to Kafka: an event encoded once, with what the sender and
the spool need to route, count and log it (never the payload)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from turnlog.schemas import STRUCTURED_CONTENT_TYPE, CloudEvent, encode

HEADERS: Final = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
"""Kafka headers of every event: structured-mode CloudEvents."""


@dataclass(slots=True)
class Message:
    """One encoded event on its way to Kafka."""

    type: str
    """CloudEvents `type`; the only metric label."""
    key: bytes
    """Kafka key: the UTF-8 `partitionkey` (the session id)."""
    value: bytes
    """`schemas.encode(event)`."""
    event_id: str
    """CloudEvents `id`, for logs."""
    published_ns: int
    """Wall clock of `publish()`, nanoseconds since the epoch (for the latency histogram)."""
    isolate: bool = False
    """Send alone: it was in a batch the broker rejected as a whole."""

    @property
    def session_id(self) -> str:
        return self.key.decode("utf-8", "replace")


def to_message(event: CloudEvent[Any], published_ns: int) -> Message:
    """Encode `event`; raises `schemas.EventTooLargeError` over `MAX_EVENT_BYTES`."""
    return Message(
        type=event.type,
        key=event.partitionkey.encode(),
        value=encode(event),
        event_id=event.id,
        published_ns=published_ns,
    )


def raw_message(event: CloudEvent[Any], published_ns: int) -> Message:
    """The event's JSON without the size check, for the dead-letter file."""
    return Message(
        type=event.type,
        key=event.partitionkey.encode(),
        value=type(event).__pydantic_serializer__.to_json(event),
        event_id=event.id,
        published_ns=published_ns,
    )
