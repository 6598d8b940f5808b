"""What one projection is to the engine: where its partitions start, and how a batch is
applied. Each projection (PostgreSQL read models, ClickHouse analytics, derived topics)
is its own consumer group, driven by its own `engine.ProjectionEngine`, and fails and
recovers alone.

The one thing to know: a projector stores its position with its results (PostgreSQL
offsets in the batch's transaction, ClickHouse positions after its inserts, the derived
projector's offsets in its Kafka transaction), so `positions` is the truth and the
group's committed offsets are only for lag and tooling. `apply` returns only when the
batch's effects and outputs are durable; it raises `DependencyUnavailableError` when a
dependency is down (the engine waits with backoff and applies the same batch again) and
lets anything else propagate (a programming error: the engine stops, the supervisor
restarts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from turnlog.projections.records import SourceRecord
from turnlog.streams.records import DeadLetter, OutRecord, RawRecord


@dataclass(frozen=True, slots=True)
class Decoded:
    """One record of the events topic that decoded: its raw form and its event."""

    raw: RawRecord
    source: SourceRecord


@dataclass(slots=True)
class DecodedBatch:
    """A batch as the engine hands it to a projector: records in fetch order (each
    partition's in ascending offsets), split into decoded events and dead letters."""

    records: list[RawRecord] = field(default_factory=list)
    events: list[Decoded] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """The records `schemas.decode` refused (reason and message from the `SchemaError`)."""

    def __len__(self) -> int:
        return len(self.records)

    def extend(self, other: DecodedBatch) -> None:
        """Append a batch decoded later (its records come after this one's)."""
        self.records.extend(other.records)
        self.events.extend(other.events)
        self.dead_letters.extend(other.dead_letters)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition) of the batch, the offset after its last record."""
        offsets: dict[tuple[str, int], int] = {}
        for record in self.records:
            offsets[record.topic, record.partition] = record.offset + 1
        return offsets


@dataclass(slots=True)
class Applied:
    """What a projector did with one batch (for metrics and logs)."""

    events: int = 0
    """Events whose effects are new."""
    duplicates: int = 0
    """Events it had already (a redelivery, or an event the log holds twice)."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """Records it refused (decode failures only when `Projector.dead_letters_decode`),
    already delivered to the dead-letter topic by the engine's `deliver` before `apply`
    returned."""
    outputs: int = 0
    """Derived records produced."""
    freshness: list[float] = field(default_factory=list)
    """Per event, seconds from its time to when it became visible."""


class Deliver(Protocol):
    """Sends records to Kafka and waits until the brokers have them all (acks=all)."""

    async def __call__(self, records: Sequence[OutRecord]) -> None: ...


class Projector(Protocol):
    """One projection, as `engine.ProjectionEngine` drives it. Methods are called from
    the engine's event loop, never two at once."""

    name: str
    """`postgres`, `clickhouse` or `derived`: metrics label, log name, DLQ stage."""
    group: str
    """Its Kafka consumer group."""
    topic: str | None
    """What it consumes: None for the events topic (every projection but the key store's)."""
    dead_letters_decode: bool
    """Whether records that do not decode are dead-lettered by this projection (one
    projection does it, so a poison record is dead-lettered once; the others skip it)."""

    async def start(self) -> None:
        """Open connections; raise `DependencyUnavailableError` while a dependency is
        down (the engine waits and calls again), `StartupError` for what waiting cannot
        fix (not migrated, misconfigured)."""
        ...

    async def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where each newly assigned (topic, partition) starts: the next offset stored
        with the results. Partitions it has no position for are left out (the engine
        uses the group's committed offset, else the log's start). May also restore
        per-partition state. Raises `DependencyUnavailableError` while it cannot tell."""
        ...

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Forget state of partitions this member no longer owns."""
        ...

    async def apply(self, batch: DecodedBatch, deliver: Deliver) -> Applied:
        """Apply the batch; return once its effects, position and outputs are durable."""
        ...

    async def stop(self) -> None:
        """Close connections (the batch in flight, if any, has finished or was dropped)."""
        ...
