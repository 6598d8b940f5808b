"""Topic specs: the four topics of DESIGN.md, the derived projector's changelog and the
privacy topics (keys, erasures), with their configs."""

from __future__ import annotations

import dataclasses

import pytest

from turnlog.schemas import (
    DLQ_TOPIC,
    EVENTS_TOPIC,
    MAX_EVENT_BYTES,
    SESSIONS_TOPIC,
    TURNS_TOPIC,
    TopicSpec,
    topic_specs,
)
from turnlog.schemas.topics import DERIVED_STATE_TOPIC, ERASURES_TOPIC, KEYS_TOPIC

pytestmark = pytest.mark.unit


def _by_name(prefix: str = "") -> dict[str, TopicSpec]:
    return {spec.name: spec for spec in topic_specs(prefix)}


def test_the_four_topics_and_the_derived_changelog() -> None:
    assert list(_by_name()) == [
        EVENTS_TOPIC, TURNS_TOPIC, SESSIONS_TOPIC, DLQ_TOPIC, DERIVED_STATE_TOPIC, KEYS_TOPIC,
        ERASURES_TOPIC,
    ]  # fmt: skip
    assert DERIVED_STATE_TOPIC == "turnlog.streams.derived-state"
    assert (EVENTS_TOPIC, TURNS_TOPIC, SESSIONS_TOPIC, DLQ_TOPIC) == (
        "turnlog.events",
        "turnlog.turns",
        "turnlog.sessions",
        "turnlog.events.dlq",
    )
    for spec in topic_specs():
        assert spec.replication_factor == 1
        assert all(isinstance(value, str) for value in spec.configs.values())


def test_prefix_is_prepended() -> None:
    assert list(_by_name("t123-")) == [f"t123-{name}" for name in _by_name()]


def test_the_log_keeps_everything_and_fits_the_largest_event() -> None:
    events = _by_name()[EVENTS_TOPIC]
    assert events.partitions == 12
    assert events.configs["retention.ms"] == "-1"
    assert events.configs["retention.bytes"] == "-1"
    assert events.configs["cleanup.policy"] == "delete"
    assert int(events.configs["max.message.bytes"]) >= 2 * MAX_EVENT_BYTES


def test_turns_are_kept_thirty_days() -> None:
    turns = _by_name()[TURNS_TOPIC]
    assert turns.partitions == 12
    assert turns.configs["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert int(turns.configs["max.message.bytes"]) > MAX_EVENT_BYTES


def test_sessions_are_compacted() -> None:
    sessions = _by_name()[SESSIONS_TOPIC]
    assert sessions.partitions == 12
    assert sessions.configs["cleanup.policy"] == "compact"


def test_dlq_keeps_thirty_days_and_fits_an_oversized_body() -> None:
    dlq = _by_name()[DLQ_TOPIC]
    assert dlq.partitions == 3
    assert dlq.configs["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert dlq.configs["retention.bytes"] == "-1"
    assert int(dlq.configs["max.message.bytes"]) >= 4 * MAX_EVENT_BYTES


def test_specs_are_immutable() -> None:
    spec = topic_specs()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.partitions = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.configs["retention.ms"] = "1"  # type: ignore[index]


def test_the_derived_changelog_is_compacted_in_the_events_partitions() -> None:
    state = _by_name()[DERIVED_STATE_TOPIC]
    assert state.partitions == _by_name()[EVENTS_TOPIC].partitions
    assert state.configs["cleanup.policy"] == "compact"
    assert int(state.configs["max.message.bytes"]) >= 2 * MAX_EVENT_BYTES


def test_an_erased_key_leaves_the_keys_topic_within_a_bounded_time() -> None:
    keys = _by_name()[KEYS_TOPIC]
    assert keys.configs["cleanup.policy"] == "compact"
    lag = int(keys.configs["max.compaction.lag.ms"])
    assert lag == int(keys.configs["segment.ms"]) == 3600 * 1000  # a closed segment is cleanable
    assert float(keys.configs["min.cleanable.dirty.ratio"]) <= 0.01
    short = {s.name: s for s in topic_specs(key_compaction_lag_ms=5000)}[KEYS_TOPIC]
    assert short.configs["max.compaction.lag.ms"] == short.configs["segment.ms"] == "5000"


def test_the_erasure_trail_is_kept_forever() -> None:
    erasures = _by_name()[ERASURES_TOPIC]
    assert erasures.configs["retention.ms"] == "-1"
    assert erasures.configs["cleanup.policy"] == "delete"


def test_retention_periods_of_the_log_and_the_dlq_can_be_set() -> None:
    specs = {s.name: s for s in topic_specs(log_retention_ms=86_400_000, dlq_retention_ms=None)}
    assert specs[EVENTS_TOPIC].configs["retention.ms"] == "86400000"
    assert specs[DLQ_TOPIC].configs["retention.ms"] == "-1"
