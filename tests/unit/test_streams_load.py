"""The streams load generator: its event mix (rates, the composition of a turn, sizes),
and the arithmetic of freshness and throughput."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.streams_consumers import BatchSetting
from bench.streams_measure import (
    ProducedLog,
    freshness,
    percentile,
    sustained_rate,
    time_to_reach,
)
from bench.streams_mix import Mix, Session, session_steps
from turnlog.schemas import CloudEvent, ConversationItemAdded, MetricsCollected, decode, encode

pytestmark = pytest.mark.unit

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def simulate(turns: int, *, seed: int = 1, mix: Mix = Mix()) -> list[CloudEvent[Any]]:  # noqa: B008
    """One whole session, each event at its scheduled time."""
    session = Session("bench-test-00001", random.Random(seed), mix)
    at, events = START, []
    for delay, payload in session_steps(session, START, turns=turns):
        at += timedelta(seconds=delay)
        events.append(session.event(payload, at))
    return events


def by_turn(events: list[CloudEvent[Any]]) -> dict[str, list[CloudEvent[Any]]]:
    turns: dict[str, list[CloudEvent[Any]]] = {}
    for event in events:
        turn = getattr(event.data, "turn_id", None)
        if turn is not None:
            turns.setdefault(turn, []).append(event)
    return turns


def test_a_session_opens_takes_turns_and_closes_in_sequence() -> None:
    events = simulate(5)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert events[0].type == "turnlog.session.started.v1"
    assert events[-1].type == "turnlog.session.closed.v1"
    assert len(by_turn(events)) == 5
    for event in events:
        assert decode(encode(event)) == event  # the catalog's codec takes every event


def test_every_turn_has_the_facts_of_a_real_turn() -> None:
    session = simulate(40)
    assert sum(e.type == "turnlog.usage.updated.v1" for e in session) == 40  # one per turn
    for turn, events in by_turn(session).items():
        types = Counter(e.type for e in events)
        finals = [e for e in events if e.type == "turnlog.user.transcribed.v1"
                  and e.data.is_final]  # fmt: skip
        interims = types["turnlog.user.transcribed.v1"] - len(finals)
        items = [e.data for e in events if isinstance(e.data, ConversationItemAdded)]
        kinds = {e.data.metrics.kind for e in events if isinstance(e.data, MetricsCollected)}
        assert len(finals) == 1, turn
        assert interims >= 4, turn  # 4 per second over at least 1.2 s of speech
        assert sorted(i.role for i in items) == ["assistant", "user"], turn
        assert kinds == {"stt", "eou", "llm", "tts"}, turn
        assert types["turnlog.speech.created.v1"] == 1, turn


def test_interims_come_several_times_a_second_while_the_user_speaks() -> None:
    for events in by_turn(simulate(20)).values():
        interims = [e.time for e in events if e.type == "turnlog.user.transcribed.v1"
                    and not e.data.is_final]  # fmt: skip
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(interims)]
        assert gaps
        assert all(gap == pytest.approx(0.25) for gap in gaps)


def test_rates_a_turn_every_few_seconds_and_about_3_events_a_second() -> None:
    events = simulate(200)
    seconds = (events[-1].time - events[0].time).total_seconds()
    per_turn = seconds / 200
    assert 4.5 < per_turn < 8.5
    assert 2.8 < len(events) / seconds < 4.2
    items = [e.data for e in events if isinstance(e.data, ConversationItemAdded)
             and e.data.role == "assistant"]  # fmt: skip
    tools = sum(e.type == "turnlog.tools.executed.v1" for e in events)
    interrupted = sum(item.interrupted for item in items)
    assert 0.08 < tools / 200 < 0.25
    assert 0.04 < interrupted / 200 < 0.18


def test_events_are_about_500_bytes() -> None:
    sizes = [len(encode(e)) for e in simulate(100)]
    assert 450 < statistics.fmean(sizes) < 650
    assert max(sizes) < 1500


def test_the_mix_is_configurable() -> None:
    quiet = simulate(30, mix=Mix(interim_hz=1.0, tool_rate=0.0, interruption_rate=0.0))
    assert not any(e.type == "turnlog.tools.executed.v1" for e in quiet)
    assert len(quiet) < len(simulate(30))


def test_freshness_is_from_event_time_to_the_first_poll_that_sees_it() -> None:
    log = ProducedLog()
    for offset, produced in enumerate([10.0, 10.1, 10.2, 10.3]):
        log.record(0, offset, produced)
    log.record(1, 0, 10.05)
    samples = [(10.25, {0: 2}), (10.4, {0: 2, 1: 1}), (10.6, {0: 4, 1: 1})]
    ages = freshness(samples, log, since=10.0, until=11.0)
    assert ages == pytest.approx([0.25, 0.15, 0.35, 0.4, 0.3])
    assert freshness(samples, log, since=10.15, until=10.25) == pytest.approx([0.4])


def test_sustained_rate_counts_from_10_to_90_percent_in_every_sink() -> None:
    fast = [(float(t), {0: 100 * t}) for t in range(11)]
    slow = [(float(t), {0: 50 * t}) for t in range(21)]
    assert time_to_reach(fast, 500) == 5.0
    assert time_to_reach(fast, 2000) is None
    assert sustained_rate([fast], 1000) == pytest.approx(100.0)
    assert sustained_rate([fast, slow], 1000) == pytest.approx(800 / (18 - 2))
    assert sustained_rate([fast], 5000) is None


def test_percentiles_and_settings() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert BatchSetting.parse("10000x0.2") == BatchSetting(10_000, 0.2)
    assert str(BatchSetting(1000, 0.2)) == "1000 / 0.2s"
