"""Derived records built from read-model rows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from turnlog.schemas import ModelInfo, decode
from turnlog.streams.derived import (
    SESSIONS_SOURCE,
    TURNS_SOURCE,
    SessionRows,
    TurnRows,
    derived_record,
    session_summarized,
    turn_completed,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def session(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": "s1", "room": "room-1", "agent_name": "tutor", "status": "active",
        "started_at": T0, "ended_at": None, "started_seq": 1, "closed_seq": None,
        "close_reason": None, "room_sid": "RM_1", "job_id": "AJ_1", "worker_id": "AW_1",
        "agent_ids": ["tutor_agent"], "participants": ["student-1"], "interruptions": 1,
        "tool_calls": 2, "errors": 0, "stt_provider": "deepgram", "stt_model": "nova-3",
        "llm_provider": "openai", "llm_model": "gpt-4o-mini", "tts_provider": None,
        "tts_model": None,
    }  # fmt: skip
    row.update(changes)
    return row


def message(sequence: int, role: str, text: str, **metrics: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": "s1", "sequence": sequence, "turn_id": "turn-1", "role": role,
        "text": text, "item_id": f"item-{sequence}", "interrupted": False,
        "confidence": None, "created_at": at(sequence * 100), "agent_id": None,
        "started_speaking_at": None, "stopped_speaking_at": None,
        "transcription_delay_s": None, "end_of_utterance_delay_s": None,
        "on_user_turn_completed_delay_s": None, "llm_ttft_s": None, "llm_ttfs_s": None,
        "tts_ttfb_s": None, "playback_latency_s": None, "e2e_latency_s": None,
    }  # fmt: skip
    row.update(metrics)
    return row


USER = message(5, "user", "what is two", confidence=0.9, end_of_utterance_delay_s=0.3,
               started_speaking_at=at(0), stopped_speaking_at=at(400))
ANSWER = message(9, "assistant", "Four.", agent_id="tutor_agent", llm_ttft_s=0.41,
                 e2e_latency_s=0.8, started_speaking_at=at(900))


def test_a_turn_takes_the_user_message_and_the_answer() -> None:
    event = turn_completed(TurnRows(session(), [ANSWER, USER], tool_calls=2, language="en"))
    assert event is not None
    data = event.data
    assert (data.turn_id, data.user_text, data.assistant_text) == ("turn-1", "what is two", "Four.")
    assert (data.end_of_turn_delay, data.llm_node_ttft, data.e2e_latency) == (0.3, 0.41, 0.8)
    assert (data.tool_call_count, data.language, data.transcript_confidence) == (2, "en", 0.9)
    assert data.user_started_speaking_at == at(0)
    assert data.agent_started_speaking_at == at(900)
    assert data.llm == ModelInfo(provider="openai", model="gpt-4o-mini")
    assert data.tts is None
    assert (event.sequence, event.time, event.source) == (9, ANSWER["created_at"], TURNS_SOURCE)
    assert (event.sessionid, event.subject) == ("s1", "room-1")


def test_a_turn_without_an_answer_has_no_record() -> None:
    assert turn_completed(TurnRows(session(), [USER])) is None


def test_several_answers_join_and_the_first_gives_the_latencies() -> None:
    second = message(12, "assistant", "Really.", interrupted=True, e2e_latency_s=3.0)
    event = turn_completed(TurnRows(session(), [USER, second, ANSWER]))
    assert event is not None
    assert event.data.assistant_text == "Four. Really."
    assert event.data.e2e_latency == 0.8
    assert event.data.interrupted is True
    assert (event.sequence, event.data.assistant_item_id) == (12, "item-9")


def test_the_id_is_the_same_for_the_same_facts_and_new_for_new_ones() -> None:
    first = turn_completed(TurnRows(session(), [ANSWER]))
    again = turn_completed(TurnRows(session(), [ANSWER]))
    completed = turn_completed(TurnRows(session(), [USER, ANSWER]))
    assert first is not None
    assert again is not None
    assert completed is not None
    assert first.id == again.id
    assert completed.id != first.id


def test_an_active_or_unstarted_session_has_no_summary() -> None:
    assert session_summarized(SessionRows(session(), 1)) is None
    closed_early = session(status="closed", closed_seq=9, ended_at=at(9000), started_seq=None)
    assert session_summarized(SessionRows(closed_early, 1)) is None


def test_a_closed_session_is_summarized() -> None:
    row = session(status="failed", closed_seq=30, ended_at=at(14_560), close_reason="error")
    event = session_summarized(SessionRows(row, 3))
    assert event is not None
    data = event.data
    assert (data.status, data.close_reason, data.duration) == ("failed", "error", 14.56)
    assert (data.turn_count, data.interruption_count, data.tool_call_count) == (3, 1, 2)
    assert data.agent_ids == ("tutor_agent",)
    assert (event.sequence, event.time, event.source) == (30, at(14_560), SESSIONS_SOURCE)


def test_the_record_is_a_structured_cloudevent_keyed_by_session() -> None:
    event = turn_completed(TurnRows(session(), [USER, ANSWER]))
    assert event is not None
    out = derived_record(event, topic="p.turnlog.turns")
    assert (out.topic, out.key) == ("p.turnlog.turns", b"s1")
    assert ("content-type", b"application/cloudevents+json") in out.headers
    assert decode(out.value) == event
