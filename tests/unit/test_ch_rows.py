"""Events to ClickHouse rows (pure: the oracle of the raw ingest), and the writer's
ingest lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_ch_sessions import START, recorded_events, session_a
from tests.unit.test_schemas_codec import model_strategy
from turnlog.projections.clickhouse.formats import encode_rows
from turnlog.projections.clickhouse.rows import (
    DERIVED_TYPES,
    EVENTS,
    TABLES,
    TURN_FACTS,
    rows_by_table,
    rows_for,
)
from turnlog.projections.clickhouse.writer import OffsetRange, ingest_lines, offset_ranges
from turnlog.projections.records import SourceRecord
from turnlog.schemas import (
    PAYLOAD_MODELS,
    AgentStateChanged,
    ConversationItemAdded,
    EventPayload,
    LlmMetrics,
    MessageMetrics,
    MetricsCollected,
    ModelInfo,
    RealtimeModelMetrics,
    SessionSummarized,
    TurnCompleted,
    UserTranscribed,
    VadMetrics,
    agent_source,
    encode,
    new_event,
)
from turnlog.schemas.events.metrics import InputTokenDetails, OutputTokenDetails

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 2, 9, 30, 15, 250000, tzinfo=UTC)


def event(payload: EventPayload, sequence: int = 7) -> Any:
    return new_event(
        payload, session_id="s-1", sequence=sequence, source=agent_source("tutor", "w1"),
        subject="room-1", time=AT, event_id="019cade2-11c0-7b72-a312-7b2fc34900e3",
    )  # fmt: skip


def by_table(payload: EventPayload) -> dict[str, list[dict[str, Any]]]:
    return rows_by_table(event(payload))


# -- every event type -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PAYLOAD_MODELS).flatmap(model_strategy))
def test_every_event_type_gives_well_formed_rows(payload: EventPayload) -> None:
    e = event(payload)
    rows = rows_for(e)
    if payload.TYPE in DERIVED_TYPES:
        assert rows == []
        return
    assert rows[0] == (
        EVENTS,
        (e.id, e.type, "s-1", 7, getattr(payload, "turn_id", None), AT,
         e.source, "room-1", payload.model_dump_json()),
    )  # fmt: skip
    assert json.loads(rows[0][1][-1]) == json.loads(payload.model_dump_json())
    for table, row in rows:
        assert table in TABLES
        assert len(row) == len(table.columns)
        encode_rows([row])  # every value is one the wire format can carry


def test_the_recorded_sessions_give_every_table_rows() -> None:
    counts: dict[str, int] = {}
    for e in recorded_events(START):
        for table, rows in rows_by_table(e).items():
            counts[table] = counts.get(table, 0) + len(rows)
    assert counts == {"events": 41, "turn_facts": 15, "metrics": 12, "usage": 9, "errors": 2}


def test_a_state_change_is_only_a_raw_event() -> None:
    rows = by_table(AgentStateChanged(turn_id="t-1", old_state="thinking", new_state="speaking"))
    assert list(rows) == ["events"]
    assert rows["events"][0]["turn_id"] == "t-1"
    assert json.loads(rows["events"][0]["data"]) == {
        "turn_id": "t-1", "old_state": "thinking", "new_state": "speaking",
    }  # fmt: skip


# -- turn facts -------------------------------------------------------------------------


def test_a_transcript_is_a_turn_fact() -> None:
    fact = by_table(
        UserTranscribed(turn_id="t-1", transcript="hello wor", is_final=False, language="en")
    )["turn_facts"][0]
    assert {k: v for k, v in fact.items() if v not in (None, (), "")} == {
        "session_id": "s-1", "turn_id": "t-1", "sequence": 7, "time": AT, "room": "room-1",
        "type": "turnlog.user.transcribed.v1", "text": "hello wor", "is_final": False,
        "language": "en",
    }  # fmt: skip


def test_facts_need_a_turn() -> None:
    assert "turn_facts" not in by_table(UserTranscribed(transcript="hi", is_final=True))


def test_an_assistant_message_carries_the_answer_latencies() -> None:
    metrics = MessageMetrics(
        started_speaking_at=AT, llm_node_ttft=0.41, llm_node_ttfs=0.6, tts_node_ttfb=0.2,
        playback_latency=0.05, e2e_latency=1.2,
        llm=ModelInfo(provider="openai", model="gpt-4o-mini"), tts=ModelInfo(provider="cartesia"),
    )  # fmt: skip
    fact = by_table(ConversationItemAdded(
        turn_id="t-1", item_id="i-2", role="assistant", text="Sure.", interrupted=True,
        agent_id="tutor", metrics=metrics,
    ))["turn_facts"][0]  # fmt: skip
    assert {k: v for k, v in fact.items() if v not in (None, (), "")} == {
        "session_id": "s-1", "turn_id": "t-1", "sequence": 7, "time": AT, "room": "room-1",
        "type": "turnlog.conversation.item_added.v1", "role": "assistant", "item_id": "i-2",
        "text": "Sure.", "interrupted": True, "agent_id": "tutor", "started_speaking_at": AT,
        "llm_node_ttft": 0.41, "llm_node_ttfs": 0.6, "tts_node_ttfb": 0.2,
        "playback_latency": 0.05, "e2e_latency": 1.2, "llm_provider": "openai",
        "llm_model": "gpt-4o-mini", "tts_provider": "cartesia",
    }  # fmt: skip


def test_a_user_message_is_never_interrupted_and_system_messages_are_not_turn_facts() -> None:
    user = by_table(ConversationItemAdded(turn_id="t", item_id="i", role="user", text="hi"))
    assert user["turn_facts"][0]["interrupted"] is None
    system = by_table(ConversationItemAdded(turn_id="t", item_id="i", role="system", text="x"))
    assert list(system) == ["events"]


def test_turn_fact_columns_line_up() -> None:
    fact = rows_for(event(UserTranscribed(turn_id="t", transcript="x", is_final=True)))[1]
    assert fact[0] is TURN_FACTS
    assert dict(zip(TURN_FACTS.columns, fact[1], strict=True))["tool_call_ids"] == ()


# -- metrics, usage ---------------------------------------------------------------------


def test_llm_metrics_normalize_tokens_and_drop_a_missing_ttft() -> None:
    m = LlmMetrics(
        timestamp=AT, provider="openai", model="gpt-4o-mini", label="LLM", request_id="r1",
        duration=0.9, ttft=-1, cancelled=True, completion_tokens=40, prompt_tokens=120,
        prompt_cached_tokens=20, total_tokens=160, tokens_per_second=44.4,
    )  # fmt: skip
    row = by_table(MetricsCollected(turn_id="t-1", metrics=m))["metrics"][0]
    assert row | {"fields": None} == {
        "session_id": "s-1", "sequence": 7, "turn_id": "t-1", "time": AT, "room": "room-1",
        "kind": "llm", "provider": "openai", "model": "gpt-4o-mini", "label": "LLM",
        "request_id": "r1", "speech_id": None, "measured_at": AT, "duration": 0.9,
        "ttft": None, "ttfb": None, "audio_duration": None, "end_of_utterance_delay": None,
        "transcription_delay": None, "cancelled": True, "input_tokens": 120,
        "cached_input_tokens": 20, "output_tokens": 40, "total_tokens": 160,
        "characters_count": 0, "fields": None,
    }  # fmt: skip
    assert row["fields"]["ttft"] == -1.0
    assert row["fields"]["cancelled"] == 1.0
    assert row["fields"]["reasoning_tokens"] == 0.0


def test_realtime_metrics_flatten_their_token_details() -> None:
    m = RealtimeModelMetrics(
        timestamp=AT, request_id="r", input_tokens=50, output_tokens=70,
        input_token_details=InputTokenDetails(audio_tokens=30, cached_tokens=12),
        output_token_details=OutputTokenDetails(audio_tokens=60),
    )  # fmt: skip
    row = by_table(MetricsCollected(metrics=m))["metrics"][0]
    assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == (50, 12, 70)
    assert (row["total_tokens"], row["ttft"], row["provider"]) == (120, None, "")
    assert row["fields"]["input_token_details.cached_tokens"] == 12.0
    assert row["fields"]["output_token_details.audio_tokens"] == 60.0


def test_vad_metrics_keep_their_numbers_in_fields() -> None:
    m = VadMetrics(timestamp=AT, label="silero", idle_time=1.5, inference_duration_total=0.2,
                   inference_count=31)  # fmt: skip
    row = by_table(MetricsCollected(metrics=m))["metrics"][0]
    assert row["fields"] == {
        "idle_time": 1.5, "inference_duration_total": 0.2, "inference_count": 31.0,
    }  # fmt: skip
    assert (row["kind"], row["duration"], row["input_tokens"]) == ("vad", None, 0)


def test_usage_gives_one_row_per_model() -> None:
    usage = next(e for e in recorded_events(START) if e.type == "turnlog.usage.updated.v1")
    rows = rows_by_table(usage)["usage"]
    summary = [
        (r["kind"], r["provider"], r["model"], r["input_tokens"], r["cached_input_tokens"],
         r["output_tokens"], r["characters_count"], r["audio_duration"])
        for r in rows
    ]  # fmt: skip
    assert summary == [
        ("llm", "openai", "gpt-4o-mini", 120, 20, 40, 0, 0.0),
        ("stt", "deepgram", "nova-3", 0, 0, 0, 0, 1.5),
        ("tts", "cartesia", "sonic-2", 0, 0, 0, 100, 3.0),
    ]
    assert rows[0]["fields"]["input_cached_tokens"] == 20.0


def test_errors_become_error_rows() -> None:
    error = next(e for e in session_a(START) if e.type == "turnlog.error.v1")
    assert rows_by_table(error)["errors"] == [{
        "session_id": "sess-a", "sequence": 25, "turn_id": "a-2", "time": error.time,
        "room": "room-a", "source": "llm", "provider": "openai", "model": "gpt-4o-mini",
        "error_type": "APIStatusError", "label": "", "message": "rate limited",
        "recoverable": True, "status_code": 429,
    }]  # fmt: skip


def test_derived_records_give_no_rows() -> None:
    assert rows_for(event(TurnCompleted(turn_id="t", interrupted=False))) == []
    summary = SessionSummarized(room_name="r", agent_name="a", started_at=AT, status="active")
    assert rows_for(event(summary)) == []


# -- ingest lines -----------------------------------------------------------------------


def records(*where: tuple[str, int, int]) -> list[SourceRecord]:
    e = event(UserTranscribed(transcript="x", is_final=True))
    return [SourceRecord(topic, partition, offset, e) for topic, partition, offset in where]


def test_offset_ranges_are_per_partition_and_sorted() -> None:
    ranges = offset_ranges(records(("t", 1, 9), ("t", 0, 5), ("t", 1, 7), ("t", 0, 4)))
    assert ranges == [OffsetRange("t", 0, 4, 5), OffsetRange("t", 1, 7, 9)]


def test_ingest_lines_carry_the_published_bytes_verbatim() -> None:
    e = event(UserTranscribed(transcript='say "hi"\n', is_final=True))
    published = b'{"as":"published", "with": [1.0, "spaces"]}'
    lines = ingest_lines(
        [
            SourceRecord("turnlog.events", 3, 17, e, published),
            SourceRecord("turnlog.events", 3, 18, e),  # upcast: no bytes, the event is encoded
        ]
    ).split(b"\n")
    assert len(lines) == 2
    assert lines[0] == (
        b'{"topic":"turnlog.events","partition":3,"offset":17,'
        b'"type":"turnlog.user.transcribed.v1","value":' + published + b"}"
    )
    second = json.loads(lines[1])
    assert (second["offset"], second["value"]) == (18, json.loads(encode(e)))
