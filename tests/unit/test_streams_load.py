"""The streams load generator: its event mix (rates, the composition of a turn, sizes),
and the arithmetic of freshness and throughput."""

from __future__ import annotations

import itertools
import json
import random
import statistics
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.streams_consumers import (
    V2_PROJECTIONS,
    BatchSetting,
    offsets_consumer,
    processes,
)
from bench.streams_cpu import V1_TOTAL, V2_TOTAL, budget, positioned, table
from bench.streams_load import (
    BOTH,
    Freshness,
    Throughput,
    alternate,
    backlog_turns,
    freshness_table,
    throughput_table,
    visible_in,
)
from bench.streams_measure import (
    Poller,
    ProducedLog,
    all_in_rate,
    first_seen,
    freshness,
    percentile,
    sustained_rate,
    time_to_reach,
)
from bench.streams_minimal import event_rows, next_offsets
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


def test_into_both_is_from_both_at_10_percent_to_both_at_100() -> None:
    fast = [(float(t), {0: 100 * t}) for t in range(11)]  # 10% at 1 s, all at 10 s
    slow = [(float(t), {0: 50 * t}) for t in range(21)]  # 10% at 2 s, all at 20 s
    assert all_in_rate([fast], 1000) == pytest.approx(900 / 9)
    assert all_in_rate([fast, slow], 1000) == pytest.approx(900 / (20 - 2))
    assert first_seen([fast, slow], 0.5) == 0.5  # both show an event at 1 s
    assert first_seen([fast, []], 0.5) is None
    assert all_in_rate([fast, slow[:15]], 1000) is None  # one never showed it all
    assert all_in_rate([], 1000) is None


def test_percentiles_and_settings() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert BatchSetting.parse("10000x0.2") == BatchSetting(10_000, 0.2)
    assert str(BatchSetting(1000, 0.2)) == "1000 / 0.2s"


def test_a_backlog_is_whole_sessions_of_about_the_asked_size() -> None:
    assert backlog_turns(100_000, 1000) == 4  # (100 - 7) / 22
    assert backlog_turns(20_000, 200) == 4
    assert backlog_turns(100, 1000) == 1  # never fewer than one turn


def test_each_repeat_starts_with_another_consumer() -> None:
    kinds = ["v2", "v1", "minimal"]
    firsts = [alternate(kinds, repeat)[0] for repeat in range(3)]
    assert firsts == ["v2", "v1", "minimal"]
    assert all(sorted(alternate(kinds, r)) == sorted(kinds) for r in range(5))
    assert alternate([], 1) == []


def test_v2_runs_one_process_per_projection_and_v1_from_its_worktree(tmp_path: Path) -> None:
    v2 = processes("v2", projections=["postgres", "clickhouse"], worktree=tmp_path)
    assert [p.role for p in v2] == ["postgres", "clickhouse"]
    assert v2[1].command[-4:] == ["--projection", "clickhouse", "-l", "warning"]
    (v1,) = processes("v1", projections=V2_PROJECTIONS, worktree=tmp_path)
    assert v1.cwd == tmp_path
    assert v1.command[-2:] == ["-m", "bench.streams_baseline"]
    assert [p.role for p in processes("minimal", projections=(), worktree=tmp_path)] == ["minimal"]
    with pytest.raises(ValueError, match="unknown consumer 'faust'"):
        processes("faust", projections=V2_PROJECTIONS, worktree=tmp_path)
    assert offsets_consumer("v2", "bench-x") == "bench-x-postgres"
    assert offsets_consumer("v1", "bench-x") == "bench-x"
    assert offsets_consumer("minimal", "bench-x") == "bench-x-minimal"


def test_visible_means_in_every_polled_sink() -> None:
    pg, ch = Poller("postgres", dict, 1.0), Poller("clickhouse", dict, 1.0)
    pg.samples.append((1.0, {0: 30, 1: 20}))
    ch.samples.append((1.0, {0: 10}))
    assert visible_in({"postgres": pg, "clickhouse": ch}, BOTH) == 10
    assert visible_in({"postgres": pg}, BOTH) == 50  # ClickHouse not polled (v2 without it)
    assert visible_in({}, BOTH) == 0


def test_tables_show_medians_and_ratios_to_each_baseline() -> None:
    setting = BatchSetting(10_000, 0.2)

    def drained(kind: str, both: float | None, pg: float) -> Throughput:
        return Throughput(kind, setting, {"both": both, "postgres": pg}, pg / 10_000)

    runs = [drained("v2", 30_000, 40_000), drained("v2", 20_000, 35_000),
            drained("v2", 25_000, 30_000), drained("v1", 5_000, 6_000),
            drained("minimal", 50_000, 60_000)]  # fmt: skip
    lines = throughput_table(runs, ["v2", "v1", "minimal"], setting)
    assert lines[0].endswith("| x v1 | x minimal |")
    assert lines[2] == "| v2 | 25,000 | 35,000 | n/a | n/a | 3.5 s | 5.00 | 0.50 |"
    assert lines[3] == "| v1 | 5,000 | 6,000 | n/a | n/a | 0.6 s | 1.00 | 0.10 |"

    def live(kind: str, pg99: float, ch99: float) -> Freshness:
        quantiles = {"postgres": (pg99 / 2, pg99), "clickhouse": (ch99 / 2, ch99)}
        return Freshness(kind, setting, 1000, 3400.0, 10_000, quantiles, 0.3)

    fresh = [live("v2", 0.4, 0.8), live("v1", 2.0, 4.0)]
    rows = freshness_table(fresh, ["v2", "v1", "minimal"], setting, 1000)
    assert "p99 PG/CH ÷ v1" in rows[0]
    assert "minimal" not in rows[0]
    assert rows[2] == "| v2 | 3,400 | 0.200 | 0.400 | 0.400 | 0.800 | 0.3 s | 0.20 / 0.20 | met |"
    assert rows[3].endswith("| 1.00 / 1.00 | MISSED |")


def test_the_minimal_projector_rows_and_offsets() -> None:
    event = simulate(1)[0]
    (row,) = event_rows([encode(event)])
    assert row[:3] == (event.sessionid, event.sequence, event.type)
    assert datetime.fromisoformat(row[3]) == event.time
    assert json.loads(row[4]) == json.loads(event.data.model_dump_json())

    class Message:
        def __init__(self, partition: int, offset: int) -> None:
            self.topic, self.partition, self.offset = "t", partition, offset

    messages = [Message(0, 5), Message(1, 2), Message(0, 6)]
    assert next_offsets(messages) == {("t", 0): 7, ("t", 1): 3}
    with pytest.raises(KeyError):
        event_rows([b'{"sessionid": "s"}'])  # no validation: what is missing stops it


def test_cpu_batches_spread_sessions_over_partitions_at_running_offsets() -> None:
    next_offset = [0] * 12
    keyed = [("a", b"1"), ("b", b"2"), ("a", b"3")]
    first = positioned(keyed, next_offset)
    again = positioned(keyed, next_offset)
    a = zlib.crc32(b"a") % 12
    assert [(p, o) for p, o, _, _ in first if p == a][:2] == [(a, 0), (a, 1)]
    assert first[0][2:] == (b"a", b"1")
    assert {(p, o) for p, o, _, _ in first}.isdisjoint({(p, o) for p, o, _, _ in again})
    assert sum(next_offset) == 6


def test_the_cpu_budget_counts_decode_twice_for_v2() -> None:
    timings = {"decode": [(10.0, 1.0, 50.0), (12.0, 1.0, 50.0), (11.0, 1.0, 50.0)],
               "postgres": [(8.0, 0.0, 90.0)], "clickhouse": [(4.0, 40.0, 200.0)],
               "bookkeeping": [(1.0, 0.0, 2.0)]}  # fmt: skip
    assert budget(timings, V2_TOTAL) == pytest.approx((2 * 11 + 8 + 4 + 2 * 1, 2 + 40))
    assert budget(timings, V1_TOTAL) is None  # no read-back measured
    lines = table(timings, None)
    assert "| decode | 11.0 | 1.0 | 50.0 | - | - | - |" in lines
    assert "**36.0**" in lines[-2]
    assert lines[-1].startswith("| all three projections")
    assert lines[-1].endswith("| - | - | | - | - | |")  # no derived stage timed
