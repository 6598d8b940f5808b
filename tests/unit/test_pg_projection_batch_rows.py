"""`BatchRows`, the writer's one-pass rows, equal `row_ops` folded by `Fold` (the oracle),
statement parameters included: the recorded sessions in any order and split, and random
events of every type (NUL characters, missing values, several sessions)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.make_sessions import build
from tests.unit.test_schemas_codec import model_strategy
from turnlog.projections.postgres.fold import BatchRows, Fold
from turnlog.projections.postgres.rows import HANDLED, NO_ROWS, row_ops
from turnlog.projections.postgres.statements import upsert_params
from turnlog.projections.postgres.tables import TABLES
from turnlog.schemas import CloudEvent, agent_source, new_event

pytestmark = pytest.mark.unit

EVENTS: list[CloudEvent[Any]] = [e for events in build().values() for e in events]


def oracle(events: Sequence[CloudEvent[Any]]) -> dict[str, list[list[Any]]]:
    fold = Fold()
    for event in events:
        fold.add_all(row_ops(event))
    return {name: upsert_params(table, fold.rows(name))
            for name, table in TABLES.items() if fold.rows(name)}  # fmt: skip


def one_pass(events: Sequence[CloudEvent[Any]]) -> dict[str, list[list[Any]]]:
    rows = BatchRows()
    rows.add_all(events)
    return rows.params()


def test_the_recorded_sessions_give_the_oracles_parameters() -> None:
    expected = oracle(EVENTS)
    assert list(expected) == list(TABLES)  # every table has rows: all of them compared
    assert one_pass(EVENTS) == expected


def test_any_order_and_copies_under_other_sessions_give_the_oracles_parameters() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    copies = [
        e.model_copy(update={"sessionid": (sid := f"{e.sessionid}_{n}"), "partitionkey": sid})
        for n in range(5)
        for e in EVENTS
    ]
    for _ in range(20):
        events = rng.sample(copies, rng.randint(1, len(copies)))
        assert one_pass(events) == oracle(events)


_TYPES = sorted(HANDLED | NO_ROWS, key=lambda model: model.TYPE)
_SESSION_IDS = st.sampled_from(["s1", "s2", "s\x00nul", "s\U0001f600"])


@st.composite
def _events(draw: st.DrawFn) -> list[CloudEvent[Any]]:
    """Random events of every type over a few sessions, each (session, sequence) once."""
    count = draw(st.integers(1, 25))
    sequences = draw(st.lists(st.integers(1, 10_000), min_size=count, max_size=count,
                              unique=True))  # fmt: skip
    events = []
    for sequence in sequences:
        session_id = draw(_SESSION_IDS)
        payload = draw(st.sampled_from(_TYPES).flatmap(model_strategy))
        events.append(new_event(
            payload, session_id=session_id, sequence=sequence,
            source=agent_source("tutor", "w"), subject=draw(st.sampled_from(["r", "a\x00b", "z"])),
            time=draw(st.datetimes(timezones=st.just(UTC))),
        ))  # fmt: skip
    return events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_events())
def test_random_events_of_every_type_give_the_oracles_parameters(
    events: list[CloudEvent[Any]],
) -> None:
    assert one_pass(events) == oracle(events)
