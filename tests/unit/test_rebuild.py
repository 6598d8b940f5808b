"""The rebuild's pure parts: progress accounting in offsets, the ranges it reads, its
names, and the replay processor's outcome (dead letters counted, never produced)."""

from __future__ import annotations

from typing import cast

import pytest

from tests.unit.test_streams_support import all_events, as_raw, bodies, mixed_bodies
from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.streams.rebuild.apply import ReplayProcessor
from turnlog.streams.rebuild.log import OffsetProgress, lowest, ranges_between
from turnlog.streams.rebuild.plan import Names, RebuildRefusedError, Target
from turnlog.streams.records import RawRecord

pytestmark = pytest.mark.unit


def record(partition: int, offset: int) -> RawRecord:
    return RawRecord("t", partition, offset, None, b"{}")


def test_progress_counts_offsets_in_each_range_once() -> None:
    progress = OffsetProgress({0: (0, 10), 1: (5, 8), 2: (3, 3)})
    assert progress.total == 13
    assert progress.completed == 0

    assert progress.advance([record(0, 0), record(0, 1), record(1, 5)]) == 3
    assert progress.advance([record(0, 1), record(1, 5)]) == 0  # seen already
    assert progress.advance([record(0, 12), record(1, 4), record(2, 3), record(9, 0)]) == 0
    assert progress.completed == 3


def test_progress_counts_a_gap_once_the_consumer_passed_it() -> None:
    """Offsets with no record (transaction markers, compaction) still count as read."""
    progress = OffsetProgress({0: (0, 10)})
    assert progress.advance([record(0, 0), record(0, 4)]) == 5
    progress.finish(0)
    assert progress.completed == progress.total == 10
    progress.finish(7)  # a partition without a range: ignored
    assert progress.completed == 10


def test_the_rebuild_reads_to_the_lowest_limit_and_never_backwards() -> None:
    end = {0: 100, 1: 50, 2: 0}
    live = {0: 80, 1: 60}
    assert lowest(end, live) == {0: 80, 1: 50, 2: 0}
    assert lowest(end) == end
    at = {0: 90, 1: 10}
    assert ranges_between(at, lowest(end, live)) == {0: (90, 90), 1: (10, 50), 2: (0, 0)}
    assert OffsetProgress(ranges_between(at, lowest(end, live))).total == 40


def test_names_of_one_rebuild() -> None:
    names = Names("public", "turnlog", "20250301120000")
    assert names.rebuilt_schema == "public_rebuild_20250301120000"
    assert names.old_schema == "public_old_20250301120000"
    assert names.rebuilt_database == "turnlog_rebuild_20250301120000"
    assert names.old_database == "turnlog_old_20250301120000"
    names.check()
    with pytest.raises(RebuildRefusedError, match="too long"):
        Names("s" * 41, "turnlog", "20250301120000").check()


def test_targets() -> None:
    assert [(t.postgres, t.clickhouse) for t in Target] == [
        (True, False),
        (False, True),
        (True, True),
    ]


def replay(projection: InMemoryProjection) -> ReplayProcessor:
    # the in-memory projection has PostgresProjection's apply_batch, not its type
    return ReplayProcessor(cast(PostgresProjection, projection), None)


def test_a_rebuild_only_counts_dead_letters_and_projects_every_good_event() -> None:
    records = as_raw(mixed_bodies(all_events(), every=30))
    projection = InMemoryProjection()
    outcome = replay(projection).process(records)

    assert outcome.dead_letters
    assert {letter.stage for letter in outcome.dead_letters} == {"decode"}
    assert outcome.consumed == len(records)
    assert outcome.applied == len(records) - len(outcome.dead_letters) == len(all_events())
    reference = InMemoryProjection()
    replay(reference).process(as_raw(bodies(all_events())))
    assert projection.snapshot() == reference.snapshot()
