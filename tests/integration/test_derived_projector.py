"""`DerivedProjector` on the real broker: shuffled and duplicated sessions in, a restart
midway (state restored from the changelog, an uncommitted transaction of the old instance
fenced and aborted), and the latest record per key on the derived topics, read
`read_committed`, equals the in-order fold."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.conftest import Topics
from tests.fixtures.make_sessions import load
from tests.unit.test_derived_state import all_sessions, latest, run
from turnlog.projections.records import SourceRecord
from turnlog.schemas import (
    EVENTS_TOPIC,
    SESSIONS_TOPIC,
    TURNS_TOPIC,
    CloudEvent,
    SessionClosed,
    SessionSummarized,
    decode,
    encode,
)
from turnlog.schemas.topics import DERIVED_STATE_TOPIC
from turnlog.streams.derived_projector import DerivedProjector
from turnlog.streams.errors import DependencyUnavailableError, StartupError
from turnlog.streams.projector import Decoded, DecodedBatch
from turnlog.streams.records import OutRecord, RawRecord

pytestmark = pytest.mark.integration

SEED = 20261203
PARTITIONS = 12
"""Of the events, turns and sessions topics (`topic_specs`)."""


def projector(
    bootstrap: str, topics: Topics, *, state_topic: str | None = None, **options: Any
) -> DerivedProjector:
    return DerivedProjector(
        bootstrap=bootstrap, group=topics.name("derived"),
        events_topic=topics.name(EVENTS_TOPIC), turns_topic=topics.name(TURNS_TOPIC),
        sessions_topic=topics.name(SESSIONS_TOPIC),
        state_topic=state_topic or topics.name(DERIVED_STATE_TOPIC),
        transactional_id=topics.name("derived-tx"), **options,
    )  # fmt: skip


async def produce(bootstrap: str, topic: str, events: list[CloudEvent[Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send(topic, encode(event), key=event.sessionid.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def no_deliver(records: Sequence[OutRecord]) -> None:
    raise AssertionError(f"the derived projector delivered {len(records)} dead letters")


async def fence(proj: DerivedProjector) -> AIOKafkaProducer:
    """Another producer of the projector's transactional id: the projector's next
    transaction fails (fenced), as after a zombie or a broker-side timeout."""
    producer = AIOKafkaProducer(bootstrap_servers=proj.bootstrap,
                                transactional_id=proj.transactional_id)  # fmt: skip
    await producer.start()
    return producer


async def drive(
    proj: DerivedProjector, bootstrap: str, topic: str, rng: random.Random, *, batches: int,
    failures: list[Exception] | None = None, first_batch: int | None = None,
) -> int:  # fmt: skip
    """A minimal engine: positions, then `apply` of random-size batches, each applied again
    after a `DependencyUnavailableError` (noted in `failures`), the first of `first_batch`
    records if given; stops after `batches` or at the end of the topic. Returns the batches
    applied."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        starts = await proj.positions([(tp.topic, tp.partition) for tp in tps])
        for tp in tps:
            if (tp.topic, tp.partition) in starts:
                consumer.seek(tp, starts[tp.topic, tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        ends = await consumer.end_offsets(tps)
        done = 0
        while done < batches:
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            size = first_batch if first_batch and done == 0 else rng.randrange(1, 60)
            fetched = await consumer.getmany(timeout_ms=500, max_records=size)
            batch = DecodedBatch()
            for records in fetched.values():
                for r in records:
                    raw = RawRecord(r.topic, r.partition, r.offset, r.key, r.value)
                    batch.records.append(raw)
                    source = SourceRecord(r.topic, r.partition, r.offset, decode(r.value or b""))
                    batch.events.append(Decoded(raw, source))
            while batch.records:
                try:
                    applied = await proj.apply(batch, no_deliver)
                except DependencyUnavailableError as error:
                    if failures is None:
                        raise
                    failures.append(error)
                    await asyncio.sleep(0.2)
                    continue
                assert applied.dead_letters == []
                # freshness, sampled: at most 64 events, each of the past
                assert 0 < len(applied.freshness) <= min(len(batch.events), 64)
                assert all(f > 0 for f in applied.freshness)
                done += 1
                break
        return done
    finally:
        await consumer.stop()


async def read_committed(
    bootstrap: str, topics: list[str]
) -> list[tuple[str, str, CloudEvent[Any]]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[tuple[str, str, CloudEvent[Any]]] = []
        while not all([await consumer.position(tp) >= ends[tp] for tp in tps]):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                found += [
                    (tp.topic, (r.key or b"").decode(), decode(r.value or b"")) for r in records
                ]
        return found
    finally:
        await consumer.stop()


def test_shuffled_sessions_with_a_restart_give_the_in_order_records(
    kafka_bootstrap: str, topics: Topics
) -> None:
    print(f"seed={SEED}")
    rng = random.Random(SEED)
    sessions = all_sessions(rng, 12)
    expected = latest(run([[e for s in sessions for e in s]]))
    events = [e for s in sessions for e in s]
    events += [e for e in events if rng.random() < 0.3]
    rng.shuffle(events)
    events_topic = topics.name(EVENTS_TOPIC)
    turns, summaries = topics.name(TURNS_TOPIC), topics.name(SESSIONS_TOPIC)

    async def scenario() -> None:
        await produce(kafka_bootstrap, events_topic, events)
        first = projector(kafka_bootstrap, topics)
        second = projector(kafka_bootstrap, topics)
        try:
            await first.start()
            assert await drive(first, kafka_bootstrap, events_topic, rng, batches=15) == 15
            # a crash mid-transaction: the old instance's open batch must never be read
            producer = first._producer
            assert producer is not None
            await producer.begin_transaction()
            await producer.send(turns, b"{}", key=b"uncommitted")
            await second.start()  # same transactional id: fences `first`, aborts its batch
            assert await drive(second, kafka_bootstrap, events_topic, rng, batches=10) == 10
            # a failed transaction: memory is ahead of the changelog until it reloads
            zombie = await fence(second)
            failures: list[Exception] = []
            try:
                await drive(second, kafka_bootstrap, events_topic, rng, batches=10_000,
                            failures=failures, first_batch=400)  # fmt: skip
            finally:
                await zombie.stop()
            assert len(failures) >= 1
        finally:
            await second.stop()
            await first.stop()

    asyncio.run(scenario())
    found = asyncio.run(read_committed(kafka_bootstrap, [turns, summaries]))
    assert all(key != "uncommitted" for _, key, _ in found)
    by_key: dict[str, list[CloudEvent[Any]]] = defaultdict(list)
    for topic, key, event in found:
        assert (topic == summaries) == isinstance(event.data, SessionSummarized), key
        by_key[key].append(event)
    final = {key: records[-1] for key, records in by_key.items()}
    assert final.keys() == expected.keys()
    for key, event in final.items():
        assert (event.id, event.data) == (expected[key].id, expected[key].data), key
    for key, records in by_key.items():
        revisions = [r.data.revision for r in records]
        assert revisions == sorted(set(revisions)), f"{key}: {revisions}"
    for session in sessions:
        sid = session[-1].sessionid
        close = next(e.sequence for e in session if isinstance(e.data, SessionClosed))
        assert final[sid].data.status in ("closed", "failed")
        assert all(r.sequence >= close for r in by_key[sid]), "a summary before the close"
        if close == len(session):
            assert len(by_key[sid]) == 1, f"{sid}: one summary, nothing came after the close"


def test_a_session_done_lingering_leaves_a_tombstone_in_the_changelog(
    kafka_bootstrap: str, topics: Topics
) -> None:
    events = load()["tutor_failed"]
    sid = events[0].sessionid
    events_topic = topics.name(EVENTS_TOPIC)
    clock = [1000.0]
    rng = random.Random(SEED)

    async def scenario() -> tuple[set[str], dict[str, int]]:
        await produce(kafka_bootstrap, events_topic, events)
        first = projector(kafka_bootstrap, topics, linger=60.0, clock=lambda: clock[0])
        again = projector(kafka_bootstrap, topics)
        try:
            await first.start()
            await drive(first, kafka_bootstrap, events_topic, rng, batches=10_000)
            clock[0] += 61  # past the linger: the next batch's sweep drops the session
            await produce(kafka_bootstrap, events_topic, events[3:4])
            await drive(first, kafka_bootstrap, events_topic, rng, batches=10_000)
            await again.start()
            await again.positions([(events_topic, p) for p in range(PARTITIONS)])
            sessions = {s for state in again._states.values() for s in state.sessions}
            tombs = {t.session_id: t.folded for st in again._states.values()
                     for t in st.tombstones.values()}  # fmt: skip
            return sessions, tombs
        finally:
            await again.stop()
            await first.stop()

    sessions, tombstones = asyncio.run(scenario())
    assert sessions == set()
    assert tombstones == {sid: len(events)}
    found = asyncio.run(read_committed(kafka_bootstrap, [topics.name(SESSIONS_TOPIC)]))
    assert [key for _, key, _ in found] == [sid], "one summary; the late duplicate added none"


def test_a_missing_state_topic_is_a_startup_error(kafka_bootstrap: str, topics: Topics) -> None:
    proj = projector(kafka_bootstrap, topics, state_topic=topics.name("no-such-state"))
    with pytest.raises(StartupError, match="stack up"):
        asyncio.run(proj.start())


def test_kafka_down_is_a_dependency_error(topics: Topics) -> None:
    proj = projector("127.0.0.1:1", topics)
    with pytest.raises(DependencyUnavailableError) as caught:
        asyncio.run(proj.start())
    assert caught.value.dependency == "Kafka at 127.0.0.1:1"
