"""Recorded voice sessions for the ClickHouse tests: deterministic events of two sessions,
with every number the tests expect spelled out here.

Session A (room-a): deepgram nova-3 STT, openai gpt-4o-mini LLM, cartesia sonic-2 TTS.
  turn a-1 (minute 0): interims "what is", "what is photo", final; eou 0.5 s, stt 0.25 s,
    llm ttft 0.41 s, tts ttfb 0.2 s, e2e 1.2 s, answered, not interrupted.
  turn a-2 (minute 1): interims "tell me", "tall me more" (revised), final; eou 0.6 s,
    stt 0.3 s, ttft 0.5 s, ttfb 0.25 s, e2e 0.9 s, one tool call, an llm error (429),
    interrupted.
  closed by the user.
Session B (room-b): deepgram nova-3 STT, google gemini-2.0-flash LLM, cartesia sonic-2.
  turn b-1 (minute 0): one interim, final; eou 0.4 s, stt 0.2 s, ttft 1.1 s, ttfb 0.3 s,
    e2e 2.4 s; then a tts error that closes the session (reason error).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from turnlog.projections.records import SourceRecord
from turnlog.schemas import (
    EVENTS_TOPIC,
    AgentStateChanged,
    CloudEvent,
    ConversationItemAdded,
    EouMetrics,
    ErrorDetail,
    ErrorOccurred,
    EventPayload,
    LlmMetrics,
    LlmUsage,
    MessageMetrics,
    MetricsCollected,
    ModelInfo,
    ParticipantJoined,
    SessionClosed,
    SessionStarted,
    SttMetrics,
    SttUsage,
    ToolCall,
    ToolsExecuted,
    TtsMetrics,
    TtsUsage,
    UsageUpdated,
    UserStateChanged,
    UserTranscribed,
    agent_source,
    decode,
    derived_event_id,
    encode,
    new_event,
)

pytestmark = pytest.mark.unit

SOURCE = agent_source("tutor", "AW_worker1")
DEEPGRAM = ModelInfo(provider="deepgram", model="nova-3")
OPENAI = ModelInfo(provider="openai", model="gpt-4o-mini")
GOOGLE = ModelInfo(provider="google", model="gemini-2.0-flash")
CARTESIA = ModelInfo(provider="cartesia", model="sonic-2")


def minute_start(now: datetime | None = None) -> datetime:
    """The start of the minute before ``now``: recent enough for the analyst queries'
    windows, and whole minutes for the rollups."""
    now = now or datetime.now(UTC)
    return now.replace(second=0, microsecond=0) - timedelta(minutes=2)


@dataclass
class Recorder:
    """Builds one session's events with gapless sequences and deterministic ids."""

    session_id: str
    room: str
    start: datetime
    events: list[CloudEvent[Any]] = field(default_factory=list)

    def at(self, seconds: float, payload: EventPayload) -> None:
        time = self.start + timedelta(seconds=seconds)
        sequence = len(self.events) + 1
        self.events.append(
            new_event(
                payload,
                session_id=self.session_id,
                sequence=sequence,
                source=SOURCE,
                subject=self.room,
                time=time,
                event_id=derived_event_id(f"{self.session_id}/{sequence}", time),
            )
        )

    def user_turn(
        self, t: float, turn: str, interims: Sequence[str], final: str, *, eou: float, stt: float
    ) -> None:
        self.at(t, UserStateChanged(turn_id=turn, old_state="listening", new_state="speaking"))
        for i, text in enumerate(interims, start=1):
            interim = UserTranscribed(turn_id=turn, transcript=text, is_final=False)
            self.at(t + 0.3 * i, interim)
        done = t + 0.3 * (len(interims) + 1)
        self.at(done, UserTranscribed(turn_id=turn, transcript=final, is_final=True, language="en"))
        eou_metrics = EouMetrics(
            timestamp=self.start + timedelta(seconds=done),
            end_of_utterance_delay=eou,
            transcription_delay=stt,
            on_user_turn_completed_delay=0.01,
        )
        self.at(done + 0.05, MetricsCollected(turn_id=turn, metrics=eou_metrics))
        metrics = MessageMetrics(
            started_speaking_at=self.start + timedelta(seconds=t),
            stopped_speaking_at=self.start + timedelta(seconds=done - 0.1),
            transcription_delay=stt,
            end_of_turn_delay=eou,
            on_user_turn_completed_delay=0.01,
            stt=DEEPGRAM,
        )
        self.at(done + 0.1, ConversationItemAdded(
            turn_id=turn, item_id=f"item-{turn}-user", role="user", text=final,
            transcript_confidence=0.9, metrics=metrics,
        ))  # fmt: skip

    def component_metrics(
        self, t: float, turn: str, llm: ModelInfo, *, ttft: float, ttfb: float,
        tokens: tuple[int, int, int], characters: int, audio: float,
    ) -> None:  # fmt: skip
        stamp = self.start + timedelta(seconds=t)
        prompt, cached, completion = tokens
        self.at(t, MetricsCollected(turn_id=turn, metrics=SttMetrics(
            timestamp=stamp, provider="deepgram", model="nova-3", label="deepgram.STT",
            request_id=f"stt-{turn}", duration=0.0, audio_duration=1.5, streamed=True,
        )))  # fmt: skip
        self.at(t + 0.1, MetricsCollected(turn_id=turn, metrics=LlmMetrics(
            timestamp=stamp, provider=llm.provider, model=llm.model, label="LLM",
            request_id=f"llm-{turn}", duration=ttft + 0.5, ttft=ttft, cancelled=False,
            completion_tokens=completion, prompt_tokens=prompt, prompt_cached_tokens=cached,
            total_tokens=prompt + completion, tokens_per_second=40.0,
        )))  # fmt: skip
        self.at(t + 0.2, MetricsCollected(turn_id=turn, metrics=TtsMetrics(
            timestamp=stamp, provider="cartesia", model="sonic-2", label="cartesia.TTS",
            request_id=f"tts-{turn}", ttfb=ttfb, duration=1.0, audio_duration=audio,
            cancelled=False, characters_count=characters, streamed=True,
        )))  # fmt: skip

    def answer(
        self, t: float, turn: str, text: str, llm: ModelInfo, *,
        ttft: float, ttfb: float, e2e: float, interrupted: bool,
    ) -> None:  # fmt: skip
        metrics = MessageMetrics(
            started_speaking_at=self.start + timedelta(seconds=t - 0.5),
            llm_node_ttft=ttft, tts_node_ttfb=ttfb, e2e_latency=e2e, llm=llm, tts=CARTESIA,
        )  # fmt: skip
        self.at(t, ConversationItemAdded(
            turn_id=turn, item_id=f"item-{turn}-assistant", role="assistant", text=text,
            interrupted=interrupted, agent_id="tutor-agent", metrics=metrics,
        ))  # fmt: skip

    def usage(self, t: float, llm: ModelInfo, *, tokens: tuple[int, int, int],
              stt_audio: float, characters: int, tts_audio: float) -> None:  # fmt: skip
        prompt, cached, completion = tokens
        self.at(t, UsageUpdated(model_usage=(
            LlmUsage(provider=llm.provider or "", model=llm.model or "", input_tokens=prompt,
                     input_cached_tokens=cached, output_tokens=completion),
            SttUsage(provider="deepgram", model="nova-3", audio_duration=stt_audio),
            TtsUsage(provider="cartesia", model="sonic-2", characters_count=characters,
                     audio_duration=tts_audio),
        )))  # fmt: skip


def session_a(start: datetime) -> list[CloudEvent[Any]]:
    r = Recorder("sess-a", "room-a", start)
    r.at(0.0, SessionStarted(job_id="job-a", agent_name="tutor", worker_id="AW_worker1",
                             stt=DEEPGRAM, llm=OPENAI, tts=CARTESIA))  # fmt: skip
    r.at(0.1, ParticipantJoined(identity="student-a", sid="PA_a", kind="standard"))
    r.user_turn(2.0, "a-1", ["what is", "what is photo"], "What is photosynthesis?",
                eou=0.5, stt=0.25)  # fmt: skip
    r.component_metrics(3.4, "a-1", OPENAI, ttft=0.41, ttfb=0.2, tokens=(120, 20, 40),
                        characters=100, audio=3.0)  # fmt: skip
    r.at(4.0, AgentStateChanged(turn_id="a-1", old_state="thinking", new_state="speaking"))
    r.answer(4.9, "a-1", "Plants turn light into sugar.", OPENAI, ttft=0.41, ttfb=0.2,
             e2e=1.2, interrupted=False)  # fmt: skip
    r.usage(5.0, OPENAI, tokens=(120, 20, 40), stt_audio=1.5, characters=100, tts_audio=3.0)
    r.user_turn(64.7, "a-2", ["tell me", "tall me more"], "Tell me more.", eou=0.6, stt=0.3)
    r.component_metrics(66.1, "a-2", OPENAI, ttft=0.5, ttfb=0.25, tokens=(180, 100, 60),
                        characters=150, audio=4.0)  # fmt: skip
    r.at(66.5, ToolsExecuted(turn_id="a-2", calls=(ToolCall(
        call_id="call-1", name="lookup", arguments='{"q": "photosynthesis"}',
        output="chlorophyll", is_error=False),)))  # fmt: skip
    r.at(66.6, ErrorOccurred(turn_id="a-2", error=ErrorDetail(
        source="llm", message="rate limited", recoverable=True, error_type="APIStatusError",
        provider="openai", model="gpt-4o-mini", status_code=429)))  # fmt: skip
    r.answer(67.0, "a-2", "Sure: leaves hold chlorophyll, which", OPENAI, ttft=0.5,
             ttfb=0.25, e2e=0.9, interrupted=True)  # fmt: skip
    r.usage(67.1, OPENAI, tokens=(300, 120, 100), stt_audio=3.0, characters=250,
            tts_audio=7.0)  # fmt: skip
    r.at(70.0, SessionClosed(reason="user_initiated"))
    return r.events


def session_b(start: datetime) -> list[CloudEvent[Any]]:
    r = Recorder("sess-b", "room-b", start)
    r.at(1.0, SessionStarted(job_id="job-b", agent_name="tutor", worker_id="AW_worker1",
                             stt=DEEPGRAM, llm=GOOGLE, tts=CARTESIA))  # fmt: skip
    r.user_turn(10.0, "b-1", ["how far"], "How far is the moon?", eou=0.4, stt=0.2)
    r.component_metrics(11.0, "b-1", GOOGLE, ttft=1.1, ttfb=0.3, tokens=(90, 0, 30),
                        characters=80, audio=2.5)  # fmt: skip
    r.answer(12.5, "b-1", "About 384,000 kilometres.", GOOGLE, ttft=1.1, ttfb=0.3, e2e=2.4,
             interrupted=False)  # fmt: skip
    r.usage(12.6, GOOGLE, tokens=(90, 0, 30), stt_audio=1.5, characters=80, tts_audio=2.5)
    error = ErrorDetail(
        source="tts", message="connection lost", recoverable=False,
        error_type="APIConnectionError", provider="cartesia", model="sonic-2",
    )  # fmt: skip
    r.at(13.0, ErrorOccurred(error=error))
    r.at(13.1, SessionClosed(reason="error", error=error))
    return r.events


def recorded_events(start: datetime) -> list[CloudEvent[Any]]:
    """Both sessions, interleaved in time order as the log would hold them."""
    return sorted(session_a(start) + session_b(start), key=lambda e: (e.time, e.sessionid))


def as_records(
    events: Iterable[CloudEvent[Any]], *, topic: str = EVENTS_TOPIC, partition: int = 0,
    first_offset: int = 0,
) -> list[SourceRecord]:  # fmt: skip
    """The events as consumed records, at consecutive offsets of one partition."""
    return [SourceRecord(topic, partition, first_offset + i, e) for i, e in enumerate(events)]


START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_sessions_have_gapless_sequences() -> None:
    for events in (session_a(START), session_b(START)):
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))


def test_recorded_events_survive_the_codec() -> None:
    events = recorded_events(START)
    assert len(events) == 28 + 13
    assert [decode(encode(e)) for e in events] == events
