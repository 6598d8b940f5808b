"""row_ops of every event type, and the merge rules of the PostgreSQL projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from turnlog.projections.postgres.errors import UnhandledEventError
from turnlog.projections.postgres.rows import (
    HANDLED,
    NO_ROWS,
    SESSION_ACTIVITY_ONLY,
    Insert,
    Upsert,
    reads,
    row_ops,
)
from turnlog.projections.postgres.tables import (
    PARTICIPANTS,
    SESSIONS,
    Column,
    Merge,
    Table,
    merge_into,
)
from turnlog.projections.postgres.tables import new_row as make_row
from turnlog.schemas import (
    EVENT_TYPES,
    AgentFalseInterruptionDetected,
    AgentHandedOff,
    AgentStateChanged,
    CloudEvent,
    ConversationItemAdded,
    DataKeyIssued,
    ErasureCompleted,
    ErrorDetail,
    ErrorOccurred,
    EventPayload,
    LlmUsage,
    MessageMetrics,
    MetricsCollected,
    ModelInfo,
    OverlappingSpeechDetected,
    ParticipantJoined,
    ParticipantLeft,
    SessionClosed,
    SessionStarted,
    SessionSummarized,
    SpeechCreated,
    SttUsage,
    ToolCall,
    ToolCallStartedUpdate,
    ToolExecutionUpdated,
    ToolsExecuted,
    TrackPublished,
    TrackUnpublished,
    TtsUsage,
    TurnCompleted,
    UsageUpdated,
    UserStateChanged,
    UserTranscribed,
    UserTurnTimedOut,
    VadMetrics,
    agent_source,
    new_event,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


def event(payload: EventPayload, seq: int = 7, *, room: str = "room-1") -> CloudEvent[Any]:
    return new_event(payload, session_id="s1", sequence=seq, source=agent_source("tutor", "w1"),
                     subject=room, time=T0 + timedelta(seconds=seq))


def touch(seq: int = 7, **values: Any) -> Upsert:
    at = T0 + timedelta(seconds=seq)
    return Upsert("sessions", ("s1",), {
        **values, "room": "room-1", "started_at": at, "last_event_at": at,
        "last_sequence": seq, "event_count": 1,
    })


def at(seq: int = 7) -> datetime:
    return T0 + timedelta(seconds=seq)


def test_every_catalog_type_is_handled_or_listed_as_producing_no_rows() -> None:
    assert set(EVENT_TYPES.values()) == HANDLED | NO_ROWS
    assert not HANDLED & NO_ROWS
    assert {TurnCompleted, SessionSummarized, DataKeyIssued, ErasureCompleted} == NO_ROWS


def test_session_started_sets_the_started_group_agent_and_linked_participant() -> None:
    payload = SessionStarted(
        job_id="AJ_1", agent_name="tutor", worker_id="w1", room_sid="RM_1", agent_id="a1",
        participant_identity="ada", accepted_at=T0, stt=ModelInfo(provider="deepgram"),
        llm=ModelInfo(provider="openai", model="gpt-4o-mini"))
    assert row_ops(event(payload, 1)) == [touch(
        1, started_seq=1, agent_name="tutor", job_id="AJ_1", worker_id="w1", room_sid="RM_1",
        accepted_at=T0, linked_identity="ada", stt_provider="deepgram", stt_model=None,
        llm_provider="openai", llm_model="gpt-4o-mini", tts_provider=None, tts_model=None,
        agent_seq=1, agent_id="a1", agent_ids=("a1",), participants=("ada",),
    )]


def test_session_started_without_agent_or_participant_leaves_them_alone() -> None:
    [op] = row_ops(event(SessionStarted(job_id="j", agent_name="", worker_id="w"), 1))
    assert isinstance(op, Upsert)
    assert not {"agent_seq", "agent_id", "agent_ids", "participants"} & set(op.values)


@pytest.mark.parametrize(("reason", "status"), [("user_initiated", "closed"), ("error", "failed")])
def test_session_closed_sets_status_reason_and_end(reason: Any, status: str) -> None:
    error = ErrorDetail(source="tts", message="gone", recoverable=False)
    payload = SessionClosed(reason=reason, error=error if reason == "error" else None)
    assert row_ops(event(payload, 40)) == [touch(
        40, closed_seq=40, status=status, close_reason=reason, ended_at=at(40),
        close_error="gone" if reason == "error" else None,
    )]


def test_participant_joined_and_left() -> None:
    joined = ParticipantJoined(identity="ada", sid="PA_1", name="Ada", kind="standard")
    left = ParticipantLeft(identity="ada", sid="PA_1", disconnect_reason="client_initiated")
    assert row_ops(event(joined, 2)) == [
        touch(2, participants=("ada",)),
        Upsert("participants", ("s1", "ada"), {
            "joined_at": at(2), "joins": 1, "joined_seq": 2, "sid": "PA_1", "name": "Ada",
            "kind": "standard", "last_joined_at": at(2)}),
    ]
    assert row_ops(event(left, 9)) == [
        touch(9, participants=("ada",)),
        Upsert("participants", ("s1", "ada"), {
            "left_seq": 9, "left_at": at(9), "disconnect_reason": "client_initiated"}),
    ]


@pytest.mark.parametrize("is_final", [False, True])
def test_user_transcribed_keeps_every_interim_and_final(is_final: bool) -> None:
    payload = UserTranscribed(turn_id="t1", transcript="hello", is_final=is_final,
                              language="en", confidence=0.8, speaker_id="S0")
    assert row_ops(event(payload, 5)) == [touch(5), Insert("transcriptions", ("s1", 5), {
        "turn_id": "t1", "is_final": is_final, "text": "hello", "language": "en",
        "confidence": 0.8, "speaker_id": "S0", "created_at": at(5)})]


def test_assistant_message_with_latency_counts_its_interruption() -> None:
    metrics = MessageMetrics(started_speaking_at=at(3), stopped_speaking_at=at(5),
                             llm_node_ttft=0.4, llm_node_tps=40.0, llm_node_ttfs=0.5,
                             tts_node_ttfb=0.2, playback_latency=0.05, e2e_latency=0.9,
                             provider_request_ids=("req_1",))
    payload = ConversationItemAdded(turn_id="t1", item_id="i2", role="assistant", text="Hi",
                                    interrupted=True, agent_id="a1", metrics=metrics)
    assert row_ops(event(payload, 6)) == [
        touch(6, assistant_turns=1, interruptions=1),
        Insert("messages", ("s1", 6), {
            "item_id": "i2", "turn_id": "t1", "role": "assistant", "text": "Hi",
            "interrupted": True, "confidence": None, "created_at": at(6), "agent_id": "a1",
            "started_speaking_at": at(3), "stopped_speaking_at": at(5),
            "transcription_delay_s": None, "end_of_utterance_delay_s": None,
            "on_user_turn_completed_delay_s": None, "llm_ttft_s": 0.4, "llm_tps": 40.0,
            "llm_ttfs_s": 0.5, "tts_ttfb_s": 0.2, "playback_latency_s": 0.05,
            "e2e_latency_s": 0.9, "provider_request_ids": ("req_1",)}),
    ]


@pytest.mark.parametrize(("role", "counters"), [
    ("user", {"user_turns": 1}), ("system", {}), ("developer", {}),
])
def test_other_messages_count_by_role(role: Any, counters: dict[str, int]) -> None:
    payload = ConversationItemAdded(item_id="i1", role=role, text="x",
                                    transcript_confidence=0.9,
                                    metrics=MessageMetrics(transcription_delay=0.2))
    session, message = row_ops(event(payload, 4))
    assert session == touch(4, **counters)
    assert isinstance(message, Insert)
    assert message.values["confidence"] == 0.9
    assert message.values["transcription_delay_s"] == 0.2


def test_tools_executed_writes_one_row_per_call_and_counts_them() -> None:
    calls = (
        ToolCall(call_id="c1", name="lookup", arguments='{"a": 1}', output="ok", is_error=False,
                 started_at=at(1), duration=0.1, group_id="g"),
        ToolCall(call_id="c2", name="grade", arguments="{oops", output="bad", is_error=True,
                 reply_required=False),
    )
    ops = row_ops(event(ToolsExecuted(turn_id="t2", calls=calls), 11))
    assert ops == [
        touch(11, tool_calls=2),
        Upsert("tool_calls", ("s1", "c1"), {
            "sequence": 11, "position": 0, "turn_id": "t2", "name": "lookup",
            "arguments": '{"a": 1}', "output": "ok", "is_error": False, "reply_required": True,
            "started_at": at(1), "duration_s": 0.1, "group_id": "g", "created_at": at(11)}),
        Upsert("tool_calls", ("s1", "c2"), {
            "sequence": 11, "position": 1, "turn_id": "t2", "name": "grade",
            "arguments": "{oops", "output": "bad", "is_error": True, "reply_required": False,
            "started_at": None, "duration_s": None, "group_id": None, "created_at": at(11)}),
    ]


def test_usage_updated_keeps_the_latest_totals() -> None:
    payload = UsageUpdated(model_usage=(
        LlmUsage(provider="openai", model="m", input_tokens=100, output_tokens=7),
        LlmUsage(provider="openai", model="m2", input_tokens=5, output_tokens=1),
        TtsUsage(provider="openai", model="t", characters_count=42, audio_duration=2.5),
        SttUsage(provider="deepgram", model="n", audio_duration=3.25),
    ))
    [op] = row_ops(event(payload, 12))
    assert isinstance(op, Upsert)
    usage = op.values["usage"]
    assert [u["kind"] for u in usage] == ["llm", "llm", "tts", "stt"]
    assert usage[2]["characters_count"] == 42
    assert {k: v for k, v in op.values.items() if k != "usage"} == {
        **touch(12).values, "usage_seq": 12, "llm_prompt_tokens": 105,
        "llm_completion_tokens": 8, "tts_characters": 42, "tts_audio_s": 2.5,
        "stt_audio_s": 3.25,
    }


def test_counters_of_turn_taking_and_errors() -> None:
    assert row_ops(event(AgentFalseInterruptionDetected(resumed=True))) == [
        touch(false_interruptions=1)]
    assert row_ops(event(UserTurnTimedOut(speech_duration=1.0, vad_speech_started_at=T0))) == [
        touch(turn_timeouts=1)]
    error = ErrorDetail(source="llm", message="429", recoverable=True)
    assert row_ops(event(ErrorOccurred(error=error))) == [touch(
        errors=1, error_seq=7, last_error="429", last_error_source="llm")]


def test_handoff_moves_the_current_agent() -> None:
    assert row_ops(event(AgentHandedOff(old_agent_id="greeter", new_agent_id="billing"))) == [
        touch(handoffs=1, agent_seq=7, agent_id="billing", agent_ids=("billing", "greeter"))]
    assert row_ops(event(AgentHandedOff(new_agent_id="first"))) == [
        touch(handoffs=1, agent_seq=7, agent_id="first", agent_ids=("first",))]


ACTIVITY_PAYLOADS: list[EventPayload] = [
    TrackPublished(participant_identity="a", participant_sid="PA", track_sid="TR",
                   kind="audio", source="microphone"),
    TrackUnpublished(participant_identity="a", participant_sid="PA", track_sid="TR"),
    UserStateChanged(old_state="listening", new_state="speaking"),
    AgentStateChanged(old_state="thinking", new_state="speaking"),
    SpeechCreated(speech_id="sp", user_initiated=False, source="generate_reply"),
    ToolExecutionUpdated(update=ToolCallStartedUpdate(call_id="c", name="n", arguments="{}")),
    MetricsCollected(metrics=VadMetrics(timestamp=T0, label="vad", idle_time=0.1,
                                        inference_duration_total=0.01, inference_count=3)),
    OverlappingSpeechDetected(is_interruption=False),
]


def test_activity_only_payloads_cover_their_list() -> None:
    assert {type(p) for p in ACTIVITY_PAYLOADS} == SESSION_ACTIVITY_ONLY


@pytest.mark.parametrize("payload", ACTIVITY_PAYLOADS, ids=lambda p: type(p).__name__)
def test_activity_only_types_touch_their_session(payload: EventPayload) -> None:
    assert row_ops(event(payload)) == [touch()]


def test_derived_records_produce_no_rows_and_are_not_read() -> None:
    derived = [
        TurnCompleted(turn_id="t1", interrupted=False),
        SessionSummarized(room_name="r", agent_name="a", started_at=T0, status="active"),
    ]
    for payload in derived:
        assert row_ops(event(payload)) == []
        assert not reads(event(payload))
    assert reads(event(AgentHandedOff(new_agent_id="x")))


class _Unknown(EventPayload):
    TYPE: ClassVar[str] = "turnlog.test.unknown.v1"


def test_a_type_the_projection_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(UnhandledEventError, match=r"turnlog\.test\.unknown\.v1") as caught:
        row_ops(event(_Unknown()))
    assert caught.value.session_id == "s1"
    assert not caught.value.retryable


def test_nul_characters_are_replaced_because_postgres_text_cannot_hold_them() -> None:
    payload = UserTranscribed(transcript="a\x00b", is_final=True)
    [_, op] = row_ops(event(payload, 3, room="r\x00"))
    assert op.values["text"] == "a\ufffdb"
    assert row_ops(event(payload, 3, room="r\x00"))[0].values["room"] == "r\ufffd"


def test_insert_is_only_for_tables_of_facts() -> None:
    with pytest.raises(ValueError, match="sessions merges its rows"):
        Insert("sessions", ("s1",), {})


# merge rules ---------------------------------------------------------------------


def test_latest_takes_the_group_of_the_greater_stamp_whatever_the_order() -> None:
    early = {"closed_seq": 5, "status": "closed", "close_reason": "user_initiated"}
    late = {"closed_seq": 9, "status": "failed", "close_reason": "error", "close_error": "x"}
    for first, second in ((early, late), (late, early)):
        row = make_row(SESSIONS, ("s1",), first)
        merge_into(SESSIONS, row, second)
        assert (row["closed_seq"], row["status"], row["close_reason"], row["close_error"]) == (
            9, "failed", "error", "x")


def test_latest_ignores_writes_without_a_stamp_and_defaults_missing_group_columns() -> None:
    row = make_row(SESSIONS, ("s1",), {"room": "r"})
    assert row["status"] == "active"
    merge_into(SESSIONS, row, {"status": "closed"})  # no stamp: not a write of the group
    assert row["status"] == "active"
    merge_into(SESSIONS, row, {"closed_seq": 3})
    assert row["status"] == "active"  # the group's default, as in the SQL


def test_least_greatest_sum_and_union() -> None:
    row = make_row(PARTICIPANTS, ("s1", "ada"), {"joined_at": at(5), "joins": 1})
    merge_into(PARTICIPANTS, row, {"joined_at": at(2), "joins": 1})
    merge_into(PARTICIPANTS, row, {"joined_at": None, "joins": 0})
    assert (row["joined_at"], row["joins"]) == (at(2), 2)
    session = make_row(SESSIONS, ("s1",), {"last_event_at": at(1), "participants": ("b",)})
    merge_into(SESSIONS, session, {"last_event_at": at(4), "participants": ("a", "b", "Z")})
    merge_into(SESSIONS, session, {"last_event_at": at(3)})
    assert session["last_event_at"] == at(4)
    assert session["participants"] == ("Z", "a", "b")  # code point order, as COLLATE "C"


def test_unknown_columns_are_refused_by_name() -> None:
    with pytest.raises(KeyError, match="sessions has no column 'colour'"):
        make_row(SESSIONS, ("s1",), {"colour": 1})
    with pytest.raises(KeyError, match="sessions has no column 'colour'"):
        merge_into(SESSIONS, make_row(SESSIONS, ("s1",), {}), {"colour": 1})


def test_a_latest_column_needs_a_greatest_stamp() -> None:
    with pytest.raises(ValueError, match=r"t\.v: stamp must be a greatest column"):
        Table("t", key=(Column("k", "text", Merge.KEEP),),
              columns=(Column("v", "text", Merge.LATEST, stamp="missing"),))
