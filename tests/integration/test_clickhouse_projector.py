"""`ClickHouseProjector` on batches built from the shared sessions (no Kafka), against the
test process's chDB folder: positions, exactness with merges stopped, a refused value
isolated and dead-lettered, and the dependency errors the engine waits on."""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_ch_fixture_sessions import fixture_events
from tests.integration.test_ch_raw_ingest import database, everything, stop_merges
from turnlog.projections.clickhouse.store import AnalyticsStore, ChdbStore
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, encode
from turnlog.streams import dlq
from turnlog.streams.clickhouse_projector import ClickHouseProjector
from turnlog.streams.errors import DependencyUnavailableError
from turnlog.streams.projector import Decoded, DecodedBatch
from turnlog.streams.records import OutRecord, RawRecord

pytestmark = pytest.mark.integration

Event = CloudEvent[Any]
DLQ = "turnlog.events.dlq"


class Delivered:
    """The engine's `Deliver`, keeping what it was given (the records reached no broker)."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def __call__(self, records: Sequence[OutRecord]) -> None:
        self.records.extend(records)


def batch(events: Sequence[Event], *, partition: int = 0, first: int = 0,
          values: dict[int, bytes] | None = None) -> DecodedBatch:  # fmt: skip
    """The events as the engine decodes them, at consecutive offsets; ``values`` replaces
    the published bytes of some (by index)."""
    decoded = DecodedBatch()
    for i, event in enumerate(events):
        value = (values or {}).get(i, encode(event))
        raw = RawRecord(EVENTS_TOPIC, partition, first + i, event.sessionid.encode(), value)
        decoded.records.append(raw)
        source = SourceRecord(EVENTS_TOPIC, partition, first + i, event, value)
        decoded.events.append(Decoded(raw, source))
    return decoded


@pytest.fixture
def projector(analytics_store: AnalyticsStore, ch_database: str) -> Iterator[ClickHouseProjector]:
    made = ClickHouseProjector(url=analytics_store.url, database=ch_database,
                               group="turnlog-clickhouse-test", dlq_topic=DLQ)  # fmt: skip
    asyncio.run(made.start())
    yield made
    asyncio.run(made.stop())


def test_a_batch_is_applied_and_its_positions_stored(projector: ClickHouseProjector) -> None:
    events = fixture_events()
    partitions = [(EVENTS_TOPIC, 0), (EVENTS_TOPIC, 1)]

    async def run() -> None:
        assert await projector.positions(partitions) == {}
        applied = await projector.apply(batch(events), Delivered())
        assert (applied.events, applied.duplicates, applied.dead_letters) == (len(events), 0, [])
        assert 0 < len(applied.freshness) <= len(events)
        assert all(f > 0 for f in applied.freshness)  # the fixtures are in the past
        assert await projector.positions(partitions) == {(EVENTS_TOPIC, 0): len(events)}
        again = await projector.apply(batch(events), Delivered())  # a redelivery: skipped
        assert (again.events, again.duplicates) == (0, len(events))

    asyncio.run(run())
    stored = projector.store.query(f"SELECT count() FROM `{projector.database}`.events")
    assert stored == [(len(events),)]


def test_reapplied_recut_and_retried_events_change_no_answer(
    analytics_store: AnalyticsStore,
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    events = fixture_events(shift_to_now=True)
    with database(analytics_store) as once, database(analytics_store) as again:
        for db in (once, again):
            stop_merges(analytics_store, db)

        async def run(db: str, batches: list[DecodedBatch], *, lose_positions: bool) -> None:
            projector = ClickHouseProjector(url=analytics_store.url, database=db,
                                            group="g", dlq_topic=DLQ)  # fmt: skip
            await projector.start()
            for b in batches:
                await projector.apply(b, Delivered())
                if lose_positions:
                    projector.store.command(f"TRUNCATE TABLE `{db}`.positions")
            await projector.stop()

        asyncio.run(run(once, [batch(events)], lose_positions=False))
        expected = everything(analytics_store, once, events)

        cuts, cut = [], 0
        while cut < len(events):
            size = rng.randint(1, 23)
            cuts.append(batch(events[cut : cut + size], first=cut))
            cut += size
        retried = rng.sample(events, len(events) // 2)  # the log holds these twice
        asyncio.run(run(again, [batch(events), *cuts], lose_positions=True))
        asyncio.run(run(again, [batch(retried, first=10_000)], lose_positions=False))
        assert analytics_store.query(f"SELECT count() FROM `{again}`.events")[0][0] > len(events)
        assert everything(analytics_store, again, events) == expected


def test_a_refused_value_is_dead_lettered_and_the_rest_applied(
    projector: ClickHouseProjector,
) -> None:
    events = fixture_events()
    bad = 7
    refused = encode(events[bad]).replace(b'"time":"2025', b'"time":"x025')
    delivered = Delivered()

    async def run() -> None:
        applied = await projector.apply(batch(events, partition=4, values={bad: refused}),
                                        delivered)  # fmt: skip
        assert applied.events == len(events) - 1
        assert [d.record.offset for d in applied.dead_letters] == [bad]
        assert await projector.positions([(EVENTS_TOPIC, 4)]) == {(EVENTS_TOPIC, 4): len(events)}

    asyncio.run(run())
    (letter,) = delivered.records
    headers = dict(letter.headers)
    assert (letter.topic, letter.value) == (DLQ, refused)
    assert headers[dlq.STAGE] == b"clickhouse"
    assert headers[dlq.SOURCE_OFFSET] == str(bad).encode()
    assert headers[dlq.REASON] == b"projection_failed"
    stored = projector.store.query(
        f"SELECT count(), countIf(sequence = {events[bad].sequence} AND session_id = "
        f"'{events[bad].sessionid}') FROM `{projector.database}`.events FINAL"
    )
    assert stored == [(len(events) - 1, 0)]


def test_a_server_that_does_not_answer_is_waited_for() -> None:
    projector = ClickHouseProjector(url="http://127.0.0.1:9", database="turnlog",
                                    group="g", dlq_topic=DLQ)  # fmt: skip
    with pytest.raises(DependencyUnavailableError, match=r"127\.0\.0\.1:9"):
        asyncio.run(projector.start())


def test_a_chdb_folder_another_process_holds_is_waited_for(tmp_path: Path) -> None:
    """The holder here is this test process's lock on the folder (as the launcher holds
    it while it applies DDL); the projector runs in a process of its own (one chDB folder
    per process)."""
    assert ChdbStore.opened_in_this_process()  # so the projector needs another process
    fd = os.open(tmp_path / ".turnlog-owner.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"pid 1: the launcher\n", 0)
    script = textwrap.dedent(f"""
        import asyncio
        from turnlog.streams.clickhouse_projector import ClickHouseProjector
        from turnlog.streams.errors import DependencyUnavailableError
        p = ClickHouseProjector(url="chdb://{tmp_path}", database="turnlog", group="g",
                                dlq_topic="dlq")
        try:
            asyncio.run(p.start())
        except DependencyUnavailableError as error:
            print("waits:", error)
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=120, cwd=Path(__file__).parents[2], check=False)  # fmt: skip
    finally:
        os.close(fd)
    assert "waits:" in done.stdout, done.stderr
    assert "the launcher" in done.stdout
