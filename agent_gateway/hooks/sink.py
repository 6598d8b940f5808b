"""Where the recorder puts events: anything with a non-blocking `publish`."""

from __future__ import annotations

from typing import Any, Protocol

from turnlog.schemas import CloudEvent


class EventSink(Protocol):
    """The publisher's interface as the hooks see it: `publish` takes one event, returns at
    once, does no I/O on the caller's path and never raises for broker trouble."""

    def publish(self, event: CloudEvent[Any]) -> None: ...


class MemorySink:
    """Keeps every event in a list; for tests and local inspection."""

    def __init__(self) -> None:
        self.events: list[CloudEvent[Any]] = []

    def publish(self, event: CloudEvent[Any]) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        """The `type` of every event, in publish order."""
        return [event.type for event in self.events]
