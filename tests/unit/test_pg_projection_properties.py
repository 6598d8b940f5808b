"""Order independence as a property: any permutation of the recorded sessions' events,
with duplicates, in any batches, gives the same read models (in-memory projection: the
writer's merge rules, without the database)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.make_sessions import SESSIONS_DIR, build, load, render
from turnlog.projections.postgres.fold import Fold
from turnlog.projections.postgres.memory import InMemoryProjection
from turnlog.projections.postgres.rows import row_ops
from turnlog.projections.records import SourceRecord
from turnlog.schemas import CloudEvent

pytestmark = pytest.mark.unit

SESSIONS = build()
EVENTS: list[CloudEvent[Any]] = [e for events in SESSIONS.values() for e in events]


def records(events: list[CloudEvent[Any]]) -> list[SourceRecord]:
    return [SourceRecord("turnlog.events", 0, offset, e) for offset, e in enumerate(events)]


def baseline() -> dict[str, list[dict[str, Any]]]:
    projection = InMemoryProjection()
    projection.apply_batch(records(EVENTS))
    return projection.snapshot()


BASELINE = baseline()


def batches(items: list[SourceRecord], sizes: list[int]) -> list[list[SourceRecord]]:
    out: list[list[SourceRecord]] = []
    start = i = 0
    while start < len(items):
        size = sizes[i % len(sizes)]
        out.append(items[start:start + size])
        start += size
        i += 1
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(len(EVENTS))),
    duplicates=st.lists(
        st.tuples(st.integers(0, len(EVENTS) - 1), st.integers(0, len(EVENTS))), max_size=60
    ),
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=8),
)
def test_permutations_and_duplicates_give_the_same_read_models(
    order: list[int], duplicates: list[tuple[int, int]], sizes: list[int]
) -> None:
    stream = [EVENTS[i] for i in order]
    for event_index, position in duplicates:
        stream.insert(position, EVENTS[event_index])
    projection = InMemoryProjection()

    results = [projection.apply_batch(b) for b in batches(records(stream), sizes)]

    assert projection.snapshot() == BASELINE
    assert sum(r.applied for r in results) == len(EVENTS)
    assert sum(r.skipped_duplicates for r in results) == len(duplicates)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_folding_a_batch_first_equals_applying_each_write_in_turn(data: st.DataObject) -> None:
    events = data.draw(st.permutations(EVENTS))
    cut = data.draw(st.integers(0, len(events)))
    one_by_one = Fold()
    for event in events:
        one_by_one.add_all(row_ops(event))
    folded_then_merged = Fold()
    for part in (events[:cut], events[cut:]):
        batch = Fold()
        for event in part:
            batch.add_all(row_ops(event))
        folded_then_merged.merge(batch)

    assert {t: folded_then_merged.rows(t) for t in one_by_one.tables} == {
        t: one_by_one.rows(t) for t in one_by_one.tables
    }


def test_the_baseline_is_what_the_sessions_say() -> None:
    sessions = {row["session_id"]: row for row in BASELINE["sessions"]}
    assert sorted(sessions) == ["sess_support_handoff", "sess_tutor_failed", "sess_tutor_happy"]
    assert [sessions[s]["event_count"] for s in sorted(sessions)] == [46, 26, 68]
    assert len(BASELINE["transcriptions"]) == 20


def test_offsets_and_duplicates_are_counted_per_batch() -> None:
    projection = InMemoryProjection()
    first = projection.apply_batch(records(EVENTS[:10]))
    again = projection.apply_batch(
        [SourceRecord("turnlog.events", 1, 5, EVENTS[3]), *records(EVENTS[:12])[8:]]
    )

    assert (first.applied, first.skipped_duplicates) == (10, 0)
    assert (again.applied, again.skipped_duplicates) == (2, 3)
    assert projection.committed_offsets("turnlog.events") == {0: 12, 1: 6}
    assert projection.committed_offsets("other") == {}


# the shared JSONL fixtures ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_recorded_session_files_are_current(name: str) -> None:
    """Regenerate with `python -m tests.fixtures.make_sessions` when this fails."""
    path = SESSIONS_DIR / f"{name}.jsonl"
    assert path.read_bytes() == render(SESSIONS[name])


def test_recorded_sessions_decode_to_what_the_generator_built() -> None:
    assert load() == SESSIONS
    for events in SESSIONS.values():
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert [e.time for e in events] == sorted(e.time for e in events)
