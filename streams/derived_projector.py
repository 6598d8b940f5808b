"""The derived topics (`turnlog.turns`, `turnlog.sessions`) as a `Projector`: the
per-session fold of `derived_state`, kept in memory per partition and stored in a
compacted changelog topic (`turnlog.streams.derived-state`, see `derived_changelog`).

The one thing to know: each batch is one Kafka transaction (`transactional_id`) holding
its derived records, the changelog records of the state they came from, the partition's
next events offset (a `position` record in the changelog) and the group's offsets
(`send_offsets_to_transaction`). So outputs, state and position commit together or not at
all; `positions` reads the changelog partition to its end and returns the stored offset.
Readers of the derived topics and of the changelog must use
`isolation_level="read_committed"`, or they may see records of an aborted batch. A batch
that fails rolls its partitions' state back to the changelog before it is applied again.

Why not a Faust table: a table needs Faust's own consumer and per-event stream machinery
(measured at about 100 µs an event), and in at-least-once mode its changelog writes are
not atomic with the outputs, so a crash could leave outputs without state or state without
outputs. Here the state is per session and written once per batch, in the same
transaction as the outputs.

Fencing is per process (`transactional_id`), not per partition: two live members never
own a partition at once, but a member that lost its partitions without noticing could
still commit one batch; the ids and revisions stay deterministic, so a consumer keeping
the latest record per key is not misled for long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from turnlog.schemas import CloudEvent
from turnlog.streams import derived_changelog
from turnlog.streams.derived import derived_records
from turnlog.streams.derived_state import DerivedState
from turnlog.streams.errors import DependencyUnavailableError, StartupError
from turnlog.streams.metrics import sample_freshness
from turnlog.streams.projector import Applied, DecodedBatch, Deliver
from turnlog.streams.startup import FETCH_BYTES, PRODUCE_BYTES

logger = logging.getLogger("turnlog.streams.derived")

KAFKA_TIMEOUT: Final = 30.0
"""Seconds a transaction or a changelog read may take before Kafka counts as down."""
TRANSACTION_TIMEOUT: Final = 15.0
"""Seconds the broker lets a transaction stay open: how long a transaction a killed
process left open can hold back read_committed readers, unless its restart (the same
transactional id) fences it at once."""
RESTORE_POLL_MS: Final = 500
EXPIRE_EVERY: Final = 1.0
"""Seconds between two sweeps of every owned partition for sessions done lingering."""

_Record = tuple[str, int | None, bytes | None, bytes | None, list[tuple[str, bytes]]]
"""(topic, partition or None for the key's, key, value or None to delete, headers)."""
_Restored = tuple[DerivedState, int | None]
"""A partition's state, and its stored next events offset if any."""


class DerivedProjector:
    """See the module doc."""

    name = "derived"
    topic: str | None = None
    dead_letters_decode = False
    min_batch_interval = 0.5
    """Seconds between the starts of two batches: each is a Kafka transaction (several
    round trips) and rewrites the changelog records of the sessions it touched."""

    def __init__(
        self, *, bootstrap: str, group: str, events_topic: str, turns_topic: str,
        sessions_topic: str, state_topic: str, transactional_id: str,
        linger: float = 600.0, max_buffered: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.group = group
        self.events_topic = events_topic
        self.turns_topic = turns_topic
        self.sessions_topic = sessions_topic
        self.state_topic = state_topic
        self.transactional_id = transactional_id
        self._linger = linger
        self._max_buffered = max_buffered
        self._clock = clock
        self._where = f"Kafka at {bootstrap}"
        self._producer: AIOKafkaProducer | None = None
        self._states: dict[int, DerivedState] = {}
        self._expired_at = 0.0
        self._stale: set[int] = set()
        """Partitions whose memory may be ahead of the changelog (a failed batch)."""

    def _new_state(self) -> DerivedState:
        return DerivedState(max_buffered=self._max_buffered, linger=self._linger)

    def _unavailable(self, doing: str, error: BaseException) -> DependencyUnavailableError:
        return DependencyUnavailableError(f"{doing}: {error!r}", dependency=self._where)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._check_topics()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"turnlog-{self.name}",
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            compression_type="lz4",
            max_request_size=PRODUCE_BYTES,
            request_timeout_ms=int(KAFKA_TIMEOUT * 1000),
            # a transaction a killed process left open holds back read_committed readers
            # until it times out (when no restart with the same id fences it first)
            transaction_timeout_ms=int(TRANSACTION_TIMEOUT * 1000),
        )  # fmt: skip
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT):
                await producer.start()  # also fences an earlier producer of this id
        except (KafkaError, OSError, TimeoutError) as error:
            await _stopped(producer)
            raise self._unavailable("starting the transactional producer", error) from error
        self._producer = producer

    async def _check_topics(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=int(KAFKA_TIMEOUT * 1000)
        )
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT):
                await admin.start()
                found = await admin.describe_topics([self.events_topic, self.state_topic])
        except (KafkaError, OSError, TimeoutError) as error:
            raise self._unavailable("reading topic metadata", error) from error
        finally:
            await _stopped(admin)
        counts = {t["topic"]: len(t["partitions"]) for t in found if t["error_code"] == 0}
        state, events = counts.get(self.state_topic, 0), counts.get(self.events_topic, 0)
        if not state:
            raise StartupError(
                f"the derived state topic {self.state_topic!r} does not exist; "
                "`turnlog stack up` creates it"
            )
        if state < events:
            raise StartupError(
                f"{self.state_topic!r} has {state} partitions, fewer than the {events} of "
                f"{self.events_topic!r}: it needs one per events partition"
            )

    async def stop(self) -> None:
        if self._producer is not None:
            await _stopped(self._producer)
            self._producer = None
        self._states.clear()

    # --- positions and state -----------------------------------------------------------

    async def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        wanted = sorted({p for topic, p in partitions if topic == self.events_topic})
        restored = await self._restore(wanted)
        found: dict[tuple[str, int], int] = {}
        for partition, (state, position) in restored.items():
            self._states[partition] = state
            self._stale.discard(partition)
            if position is not None:
                found[self.events_topic, partition] = position
        return found

    async def _restore(
        self, partitions: Sequence[int]
    ) -> dict[int, tuple[DerivedState, int | None]]:
        """Each partition's state and position, read from the changelog to its end."""
        if not partitions:
            return {}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False,
            isolation_level="read_committed", max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
        )  # fmt: skip
        latest: dict[int, dict[bytes, bytes | None]] = defaultdict(dict)
        tps = [TopicPartition(self.state_topic, p) for p in partitions]
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT):
                await consumer.start()
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                waiting = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
                while waiting:
                    fetched = await consumer.getmany(*waiting, timeout_ms=RESTORE_POLL_MS)
                    for tp, records in fetched.items():
                        for record in records:
                            if record.key is not None:
                                latest[tp.partition][record.key] = record.value
                    waiting = {tp for tp in waiting if await consumer.position(tp) < ends[tp]}
        except (KafkaError, OSError, TimeoutError) as error:
            raise self._unavailable(f"reading {self.state_topic}", error) from error
        finally:
            await _stopped(consumer)
        restored: dict[int, _Restored] = {}
        for partition in partitions:
            state = self._new_state()
            values = ((k, v) for k, v in latest[partition].items() if v is not None)
            position = derived_changelog.restore(state, values)
            state.take_changes()  # what was read is stored already
            restored[partition] = (state, position)
        return restored

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            if topic == self.events_topic:
                self._states.pop(partition, None)
                self._stale.discard(partition)

    # --- batches -----------------------------------------------------------------------

    async def apply(self, batch: DecodedBatch, deliver: Deliver) -> Applied:
        """Fold the batch per partition, then commit its outputs, state and positions in
        one transaction. `deliver` is unused: this projection dead-letters nothing."""
        del deliver
        if self._producer is None:
            await self.start()  # the last one was dropped after a failed transaction
        producer = self._producer
        if producer is None:
            raise RuntimeError("the derived projector is not started")
        offsets = {p: o for (t, p), o in batch.next_offsets().items() if t == self.events_topic}
        await self._refresh(sorted(self._stale | (offsets.keys() - self._states.keys())))
        applied = Applied()
        now = self._clock()
        by_partition: dict[int, list[CloudEvent[Any]]] = defaultdict(list)
        for decoded in batch.events:
            if decoded.raw.topic == self.events_topic:
                by_partition[decoded.raw.partition].append(decoded.source.event)
        expiring: set[int] = set()
        if now - self._expired_at >= EXPIRE_EVERY:  # drop done sessions now and then
            expiring, self._expired_at = set(self._states), now
        records: list[_Record] = []
        for partition in sorted(offsets.keys() | expiring):
            records += self._fold(partition, by_partition.get(partition, []),
                                  offsets.get(partition), applied, now=now,
                                  expire=partition in expiring)  # fmt: skip
        await self._commit(producer, records, offsets, touched=sorted(offsets.keys() | expiring))
        applied.freshness = sample_freshness([d.source for d in batch.events])  # committed
        return applied

    def _fold(
        self, partition: int, events: Sequence[CloudEvent[Any]], offset: int | None,
        applied: Applied, *, now: float, expire: bool,
    ) -> list[_Record]:  # fmt: skip
        """Fold one partition's events; its outputs, changelog records and position."""
        state = self._states[partition]
        state.counts.new = state.counts.duplicates = 0
        for event in events:
            state.add(event, now=now)
        outputs = state.flush(now=now)
        if expire:
            state.expire(now)
        applied.events += state.counts.new
        applied.duplicates += state.counts.duplicates
        applied.outputs += len(outputs)
        records: list[_Record] = [
            (out.topic, None, out.key, out.value, list(out.headers))
            for out in derived_records(
                outputs, turns_topic=self.turns_topic, sessions_topic=self.sessions_topic
            )
        ]
        for key, value in derived_changelog.changes(state):
            records.append((self.state_topic, partition, key, value, []))
        if offset is not None:
            position = derived_changelog.position_value(offset)
            records.append(
                (self.state_topic, partition, derived_changelog.POSITION_KEY, position, [])
            )
        return records

    async def _refresh(self, partitions: Sequence[int]) -> None:
        """Reload partitions whose memory is unknown or ahead of the changelog."""
        if partitions:
            for partition, (state, _) in (await self._restore(partitions)).items():
                self._states[partition] = state
                self._stale.discard(partition)

    async def _commit(
        self, producer: AIOKafkaProducer,
        records: Sequence[_Record],
        offsets: dict[int, int], *, touched: Sequence[int],
    ) -> None:  # fmt: skip
        group_offsets = {TopicPartition(self.events_topic, p): o for p, o in offsets.items()}
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT):
                await producer.begin_transaction()
                sent = [
                    await producer.send(topic, value, key=key, partition=partition,
                                        headers=headers)
                    for topic, partition, key, value, headers in records
                ]  # fmt: skip
                await asyncio.gather(*sent)
                await producer.send_offsets_to_transaction(group_offsets, self.group)
                await producer.commit_transaction()
        except (KafkaError, OSError, TimeoutError) as error:
            self._stale.update(touched)  # memory holds the batch; the changelog may not
            await self._abandon(producer)
            raise self._unavailable("committing a derived batch", error) from error

    async def _abandon(self, producer: AIOKafkaProducer) -> None:
        """Abort the open transaction if Kafka lets us; else start a new producer next time
        (a fenced or broken transactional producer cannot be reused)."""
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT / 3):
                await producer.abort_transaction()
            return
        except Exception as error:  # any failure here means: start anew
            logger.warning("aborting a derived transaction failed (%r): new producer", error)
        await _stopped(producer)
        self._producer = None
        try:
            await self.start()
        except DependencyUnavailableError as error:
            logger.warning("restarting the derived producer failed: %s", error)


async def _stopped(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient) -> None:
    try:
        async with asyncio.timeout(5.0):
            if isinstance(client, AIOKafkaAdminClient):
                await client.close()
            else:
                await client.stop()
    except Exception as error:  # a stop must not hide the real error
        logger.debug("stopping a Kafka client failed (%r)", error)
