"""The derived-topics fold (`streams.derived_state`): sessions delivered shuffled, with
duplicates, in random batch cuts, give the same final record per key as in order."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.make_sessions import (
    Recorder,
    agent_turn,
    load,
    started,
    usage,
    user_turn,
)
from turnlog.schemas import (
    AgentHandedOff,
    CloudEvent,
    ConversationItemAdded,
    ErrorDetail,
    ErrorOccurred,
    MessageMetrics,
    ParticipantJoined,
    ParticipantLeft,
    SessionClosed,
    SessionStarted,
    SessionSummarized,
    ToolCall,
    ToolsExecuted,
    TurnCompleted,
    UserTranscribed,
    derived_event_id,
    new_event,
)
from turnlog.streams import derived_changelog
from turnlog.streams.derived_state import LATENCIES, DerivedState, Output

pytestmark = pytest.mark.unit

T0 = datetime(2025, 5, 6, 8, 0, tzinfo=UTC)


# --- sessions ---------------------------------------------------------------------------


def generated_session(rng: random.Random, session_id: str) -> list[CloudEvent[Any]]:
    """A session with random turns: answers with tools, second answers, late final
    transcripts and tool batches after the answer, handoffs, errors, turns without an
    answer, and (sometimes) facts after the close."""
    rec = Recorder(
        session_id, f"room-{session_id}", "tutor", T0 + timedelta(minutes=rng.randrange(60))
    )
    started(rec, "tutor", agent_id="agent_a", identity=f"user-{session_id}")
    rec.at(40, ParticipantJoined(identity=f"user-{session_id}", sid="PA_1"))
    t = 100
    for n in range(rng.randrange(1, 6)):
        turn = f"turn_{n}"
        t = user_turn(rec, t, turn, ["hm"] * rng.randrange(2), f"question {n}", confidence=0.9)
        if rng.random() < 0.15:
            continue  # the user spoke, the agent never answered
        if rng.random() < 0.2:
            rec.at(
                t + 5, AgentHandedOff(turn_id=turn, old_agent_id="agent_a", new_agent_id="agent_b")
            )
        tools = None
        if rng.random() < 0.3:
            tools = ToolsExecuted(turn_id=turn, calls=(
                ToolCall(call_id=f"call_{n}", name="look_up", arguments="{}", output="1",
                         is_error=False),
            ))  # fmt: skip
        t = agent_turn(rec, t + 10, turn, f"answer {n}", agent_id="agent_a", e2e=1.0 + n,
                       interrupted=rng.random() < 0.3, tools=tools)  # fmt: skip
        if rng.random() < 0.3:
            t += 50
            rec.at(t, ConversationItemAdded(
                turn_id=turn, item_id=f"item_{turn}_agent2", role="assistant",
                text="and more", agent_id="agent_a",
                metrics=MessageMetrics(playback_latency=0.07),
            ))  # fmt: skip
        if rng.random() < 0.3:
            t += 50
            rec.at(t, UserTranscribed(turn_id=turn, transcript=f"question {n}", is_final=True,
                                      language="fr"))  # fmt: skip
        if rng.random() < 0.2:
            t += 50
            rec.at(t, ToolsExecuted(turn_id=turn, calls=(
                ToolCall(call_id=f"late_{n}", name="log", arguments="{}", output="", is_error=True),
            )))  # fmt: skip
        if rng.random() < 0.15:
            t += 50
            rec.at(
                t,
                ErrorOccurred(
                    turn_id=turn,
                    error=ErrorDetail(
                        source="llm", error_type="APIError", message="boom", recoverable=True
                    ),
                ),
            )
    rec.at(t + 100, SessionClosed(reason="user_initiated"))
    if rng.random() < 0.5:  # late facts: the summary is corrected
        rec.at(t + 150, usage(rec))
        rec.at(t + 160, ParticipantLeft(identity=f"late-{session_id}", sid="PA_9"))
    return rec.events


def all_sessions(rng: random.Random, generated: int) -> list[list[CloudEvent[Any]]]:
    fixtures = list(load().values())
    return fixtures + [generated_session(rng, f"gen_{i}") for i in range(generated)]


def deliveries(
    rng: random.Random, sessions: Sequence[Sequence[CloudEvent[Any]]]
) -> list[list[CloudEvent[Any]]]:
    """Every event once or more, shuffled across sessions, cut into random batches."""
    events = [e for session in sessions for e in session]
    events += [e for e in events if rng.random() < 0.3]
    rng.shuffle(events)
    batches: list[list[CloudEvent[Any]]] = []
    while events:
        size = rng.randrange(1, 40)
        batches.append(events[:size])
        events = events[size:]
    return batches


def run(
    batches: Iterable[Sequence[CloudEvent[Any]]], state: DerivedState | None = None
) -> list[Output]:
    state = state or DerivedState()
    outputs: list[Output] = []
    for batch in batches:
        for event in batch:
            state.add(event)
        outputs.extend(state.flush())
    return outputs


def latest(outputs: Iterable[Output]) -> dict[str, CloudEvent[Any]]:
    final: dict[str, CloudEvent[Any]] = {}
    for out in outputs:
        final[out.key] = out.event
    return final


# --- in order: the same records the rows gave -----------------------------------------


def oracle(events: Sequence[CloudEvent[Any]]) -> dict[str, Any]:
    """The records of a fully delivered session, computed over the whole event list at
    once, field by field, as the read-model rows had them (independent of the fold)."""
    sid, by_turn = events[0].sessionid, defaultdict(list)
    items = [e for e in events if isinstance(e.data, ConversationItemAdded)]
    for event in items:
        by_turn[event.data.turn_id].append(event)
    start = next(e.data for e in events if isinstance(e.data, SessionStarted))
    found: dict[str, Any] = {}
    for turn_id, messages in by_turn.items():
        users = [m for m in messages if m.data.role == "user"]
        answers = [m for m in messages if m.data.role == "assistant"]
        if turn_id is None or not answers:
            continue
        user = users[0].data if users else None
        measured = [m.data.metrics for m in (users[:1] + answers)]
        finals = [
            e.data.language
            for e in events
            if isinstance(e.data, UserTranscribed)
            and e.data.turn_id == turn_id
            and e.data.is_final
            and e.data.language
        ]
        calls = {
            c.call_id
            for e in events
            if isinstance(e.data, ToolsExecuted) and e.data.turn_id == turn_id
            for c in e.data.calls
        }
        found[f"{sid}/{turn_id}"] = TurnCompleted(
            turn_id=turn_id, interrupted=any(a.data.interrupted for a in answers),
            user_text=user and user.text, assistant_text=" ".join(a.data.text for a in answers),
            user_item_id=user and user.item_id, assistant_item_id=answers[0].data.item_id,
            agent_id=answers[0].data.agent_id, language=finals[-1] if finals else None,
            transcript_confidence=user and user.transcript_confidence,
            user_started_speaking_at=user and user.metrics.started_speaking_at,
            user_stopped_speaking_at=user and user.metrics.stopped_speaking_at,
            agent_started_speaking_at=answers[0].data.metrics.started_speaking_at,
            tool_call_count=len(calls), stt=start.stt, llm=start.llm, tts=start.tts,
            **{name: next((getattr(m, name) for m in measured
                           if getattr(m, name) is not None), None) for name in LATENCIES},
        )  # fmt: skip
    close = next(e for e in events if isinstance(e.data, SessionClosed))
    started_at = min(e.time for e in events)
    agents = {start.agent_id} | {
        a
        for e in events
        if isinstance(e.data, AgentHandedOff)
        for a in (e.data.old_agent_id, e.data.new_agent_id)
        if a
    }
    people = {start.participant_identity} | {
        e.data.identity for e in events if isinstance(e.data, ParticipantJoined | ParticipantLeft)
    }
    found[sid] = SessionSummarized(
        room_name=close.subject, agent_name=start.agent_name, started_at=started_at,
        status="failed" if close.data.reason == "error" else "closed", ended_at=close.time,
        duration=(close.time - started_at).total_seconds(), close_reason=close.data.reason,
        room_sid=start.room_sid, job_id=start.job_id, worker_id=start.worker_id,
        agent_ids=tuple(a for a in agents if a), participants=tuple(p for p in people if p),
        turn_count=len([k for k in found if k != sid]),
        interruption_count=sum(1 for e in items if e.data.interrupted),
        tool_call_count=sum(len(e.data.calls) for e in events if isinstance(e.data, ToolsExecuted)),
        error_count=sum(1 for e in events if isinstance(e.data, ErrorOccurred)),
    )  # fmt: skip
    return found


def comparable(payload: TurnCompleted | SessionSummarized) -> dict[str, Any]:
    data = payload.model_dump(exclude={"revision"})
    for name in ("agent_ids", "participants"):  # rows keep sorted sets; the fold, first seen
        if name in data:
            data[name] = sorted(data[name])
    return data


def test_in_order_the_fold_gives_what_the_whole_session_says() -> None:
    rng = random.Random(7)
    for events in all_sessions(rng, 20):
        mine = {k: comparable(e.data) for k, e in latest(run([events])).items()}
        theirs = {k: comparable(p) for k, p in oracle(events).items()}
        assert mine == theirs


def test_a_fixture_session_in_order() -> None:
    events = load()["tutor_happy"]
    outputs = run([events])
    keys = [o.key for o in outputs]
    assert keys == [f"sess_tutor_happy/turn_{n}" for n in (1, 2, 3, 4)] + ["sess_tutor_happy"]
    summary = outputs[-1].event
    assert isinstance(summary.data, SessionSummarized)
    assert (summary.data.status, summary.data.turn_count, summary.data.revision) == (
        "closed",
        4,
        68,
    )
    assert summary.id == derived_event_id("sess_tutor_happy/session/68", summary.time)
    assert summary.data.participants == ("student-1",)


# --- any delivery order ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_any_delivery_gives_the_in_order_records(seed: int) -> None:
    print(f"seed={seed}")
    rng = random.Random(seed)
    sessions = all_sessions(rng, 8)
    expected = latest(run([[e for s in sessions for e in s]]))
    state = DerivedState()
    delivered: set[tuple[str, int]] = set()
    outputs: list[Output] = []
    close = {s[0].sessionid: next(e.sequence for e in s if isinstance(e.data, SessionClosed))
             for s in sessions}  # fmt: skip
    for batch in deliveries(rng, sessions):
        for event in batch:
            state.add(event)
            delivered.add((event.sessionid, event.sequence))
        for out in state.flush():
            sid, data = out.event.sessionid, out.event.data
            prefix = range(1, out.event.sequence + 1)
            assert all((sid, s) in delivered for s in prefix), "emitted past the prefix"
            if isinstance(data, SessionSummarized):
                assert out.event.sequence >= close[sid]
                assert data.status != "active"
            outputs.append(out)
    final = latest(outputs)
    assert final.keys() == expected.keys()
    for key, event in final.items():
        assert (event.id, event.data) == (expected[key].id, expected[key].data), key
    revisions: dict[str, list[int]] = defaultdict(list)
    for out in outputs:
        revisions[out.key].append(out.event.data.revision)
    for key, seen in revisions.items():
        assert seen == sorted(set(seen)), f"{key}: revisions {seen} not strictly increasing"
    for events in sessions:
        sid = events[0].sessionid
        summaries = revisions[sid]
        after_close = len(events) - close[sid]
        assert 1 <= len(summaries) <= after_close + 1
        if after_close == 0:
            assert len(summaries) == 1, "one summary for a session with nothing after its close"


def test_a_late_fact_corrects_the_turn_with_the_same_key() -> None:
    events = load()["tutor_happy"]
    answer = next(e for e in events if isinstance(e.data, ConversationItemAdded)
                  and e.data.role == "assistant")  # fmt: skip
    user = next(e for e in events if isinstance(e.data, ConversationItemAdded)
                and e.data.role == "user" and e.data.turn_id == answer.data.turn_id)  # fmt: skip
    before = [e for e in events if e.sequence <= answer.sequence and e is not user]
    state = DerivedState()
    for event in before:
        state.add(event)
    assert state.flush() == [], "a gap before the answer holds the turn back"
    state.add(user)
    first = state.flush()
    assert [o.key for o in first] == ["sess_tutor_happy/turn_1"]
    assert first[0].event.data.user_text == "what is seven times eight"
    for event in events:
        state.add(event)
    rest = [o for o in state.flush() if o.key == "sess_tutor_happy/turn_1"]
    if rest:  # a later fact of turn 1 (its usage is not one): a higher revision
        assert rest[0].event.data.revision > first[0].event.data.revision


# --- restart: the changelog restores the fold -------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_a_restored_fold_continues_where_it_stopped(seed: int) -> None:
    print(f"seed={seed}")
    rng = random.Random(seed)
    sessions = all_sessions(rng, 4)
    expected = latest(run([[e for s in sessions for e in s]]))
    batches = deliveries(rng, sessions)
    cut = rng.randrange(len(batches))
    state = DerivedState()
    outputs = run(batches[:cut], state)
    log: dict[bytes, bytes | None] = dict(derived_changelog.changes(state))
    restored = DerivedState()
    derived_changelog.restore(restored, ((k, v) for k, v in log.items() if v is not None))
    outputs += run(batches[cut:], restored)
    assert latest(outputs) == expected


# --- bounded memory ---------------------------------------------------------------------


def test_past_the_buffer_cap_the_gap_is_skipped() -> None:
    events = load()["tutor_failed"]
    state = DerivedState(max_buffered=3)
    for event in events[2:6]:  # 1 and 2 missing: four waiting, one too many
        state.add(event)
    session = state.sessions[events[0].sessionid]
    assert (session.folded, session.skipped, state.counts.skipped) == (6, 2, 2)
    assert not state.add(events[0]), "a skipped sequence arriving later is ignored"


def test_a_summarized_session_is_dropped_after_linger_and_late_events_stay_out() -> None:
    events = load()["tutor_failed"]
    sid = events[0].sessionid
    state = DerivedState(linger=60, tombstone_ttl=3600)
    for event in events:
        state.add(event, now=0)
    assert len(state.flush(now=10)) == 2
    state.expire(now=69)
    assert sid in state.sessions
    state.expire(now=70)
    assert sid not in state.sessions
    assert state.tombstones[sid].folded == len(events)
    assert not state.add(events[3], now=71)
    assert state.counts.duplicates == 1
    late = new_event(ParticipantLeft(identity="x", sid="PA"), session_id=sid,
                     sequence=len(events) + 1, source=events[0].source,
                     subject=events[0].subject, time=T0)  # fmt: skip
    assert not state.add(late, now=72)
    assert state.counts.late == 1
    assert state.flush(now=72) == []
    state.expire(now=70 + 3600)
    assert sid not in state.tombstones
    sessions, turns, buffered = state.take_changes()
    assert sid in sessions
    assert turns
    assert not buffered


def test_a_missing_sequence_is_given_up_after_gap_wait() -> None:
    events = load()["tutor_failed"]
    state = DerivedState(gap_wait=30, idle_ttl=100)
    for event in events[1:]:  # session.started never comes
        state.add(event, now=0)
    assert state.flush(now=0) == []
    state.expire(now=29)
    assert state.flush(now=29) == []
    state.expire(now=30)
    outputs = state.flush(now=30)
    assert [o.key for o in outputs] == ["sess_tutor_failed/turn_1", "sess_tutor_failed"]
    assert state.counts.skipped == 1


def test_a_session_that_never_closes_is_dropped_after_idle_ttl() -> None:
    events = load()["tutor_failed"][:-1]  # no session.closed
    sid = events[0].sessionid
    state = DerivedState(idle_ttl=100)
    for event in events:
        state.add(event, now=0)
    state.flush(now=0)
    state.expire(now=99)
    assert sid in state.sessions
    state.expire(now=100)
    assert sid not in state.sessions
    assert state.tombstones[sid].folded == len(events)


def test_derived_records_on_the_log_are_not_folded() -> None:
    events = load()["tutor_failed"]
    outputs = run([events])
    state = DerivedState()
    assert not any(state.add(o.event) for o in outputs)
    assert state.sessions == {}


def test_a_bad_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="max_buffered"):
        DerivedState(max_buffered=0)
    with pytest.raises(ValueError, match="durations"):
        DerivedState(gap_wait=-1)
