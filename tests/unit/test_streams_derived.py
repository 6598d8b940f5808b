"""Derived outputs as Kafka records: topic by payload, key per turn or session (pure)."""

from __future__ import annotations

import pytest

from tests.fixtures.make_sessions import load
from turnlog.schemas import SessionSummarized, TurnCompleted, decode
from turnlog.streams.derived import (
    CONTENT_TYPE_HEADER,
    SESSIONS_SOURCE,
    TURNS_SOURCE,
    derived_record,
    derived_records,
)
from turnlog.streams.derived_state import DerivedState, Output

pytestmark = pytest.mark.unit


def outputs() -> list[Output]:
    state = DerivedState()
    for event in load()["tutor_failed"]:
        state.add(event)
    return state.flush()


def test_turns_are_keyed_by_session_and_turn_summaries_by_session() -> None:
    records = derived_records(outputs(), turns_topic="t.turns", sessions_topic="t.sessions")
    assert [(r.topic, r.key) for r in records] == [
        ("t.turns", b"sess_tutor_failed/turn_1"),
        ("t.sessions", b"sess_tutor_failed"),
    ]
    assert all(r.headers == (CONTENT_TYPE_HEADER,) for r in records)


def test_a_record_decodes_to_the_same_event() -> None:
    turn, summary = outputs()
    turn_event = decode(derived_record(turn, topic="x").value)
    summary_event = decode(derived_record(summary, topic="x").value)
    assert isinstance(turn_event.data, TurnCompleted)
    assert turn_event.source == TURNS_SOURCE
    assert isinstance(summary_event.data, SessionSummarized)
    assert summary_event.source == SESSIONS_SOURCE
    assert (turn_event, summary_event) == (turn.event, summary.event)


def test_a_source_event_is_refused() -> None:
    event = load()["tutor_failed"][0]
    with pytest.raises(TypeError, match="not a derived record"):
        derived_records([Output("k", event)], turns_topic="a", sessions_topic="b")
