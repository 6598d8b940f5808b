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

    @property
    def key(self) -> tuple[str, int]:
        """The event's identity for idempotency: (session id, sequence)."""
        return self.event.sessionid, self.event.sequence
