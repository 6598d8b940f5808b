"""What a projection consumes: a decoded event and where in the log it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from turnlog.schemas import CloudEvent


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One event of the log at its position (topic, partition, offset)."""

    topic: str
    partition: int
    offset: int
    event: CloudEvent[Any]
    value: bytes | None = None
    """The record's bytes as published, when they are the event as decoded; None when
    the event was upcast from an older type (a writer then encodes ``event``)."""

    @property
    def key(self) -> tuple[str, int]:
        """The event's identity for idempotency: (session id, sequence)."""
        return self.event.sessionid, self.event.sequence
