"""The simulated voice sessions of the streams load generator: what one session emits,
and when, in the proportions of a real LiveKit agent session.

A session opens (session.started, the caller joins, two audio tracks, the agent starts
listening), then takes turns until told to stop, then closes (the caller leaves,
session.closed). One turn:
- the user speaks for 1.2 to 3 s: user.state_changed, then an interim user.transcribed
  every 1 / `interim_hz` seconds while speaking, user.state_changed again;
- STT metrics, the final transcript, EOU metrics, the user's conversation item with its
  latency metrics;
- the agent thinks (agent.state_changed, speech.created, LLM metrics; in `tool_rate` of
  the turns a tools.executed batch and a second LLM round), speaks for 1.5 to 4 s (TTS
  metrics; cut short in `interruption_rate` of the turns, sometimes with a false
  interruption instead), its conversation item, back to listening, usage.updated;
- a pause of 0.3 to 1.5 s before the user speaks again.
That is ~22 events per turn, a turn every ~6.5 s: ~3.4 events/s per session (1,000
sessions: ~3,400 events/s), ~580 bytes each once encoded (interims ~480, metrics ~730).
Every event is built with the catalog's `new_event` and its payload model, so the
consumers decode exactly what the gateway publishes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from turnlog.schemas import (
    AgentFalseInterruptionDetected,
    AgentStateChanged,
    CloudEvent,
    ConversationItemAdded,
    EouMetrics,
    EventPayload,
    LlmMetrics,
    LlmUsage,
    MessageMetrics,
    MetricsCollected,
    ModelInfo,
    ParticipantJoined,
    ParticipantLeft,
    SessionClosed,
    SessionStarted,
    SpeechCreated,
    SttMetrics,
    SttUsage,
    ToolCall,
    ToolsExecuted,
    TrackPublished,
    TtsMetrics,
    TtsUsage,
    UsageUpdated,
    UserStateChanged,
    UserTranscribed,
    agent_source,
    new_event,
)

Step = tuple[float, EventPayload]
"""Seconds after the previous step, and the payload to emit then."""

WORDS = ("can", "you", "tell", "me", "about", "my", "order", "the", "invoice", "from",
         "last", "month", "please", "check", "when", "it", "will", "arrive", "thanks")  # fmt: skip
STT = ModelInfo(provider="deepgram", model="nova-3")
LLM = ModelInfo(provider="openai", model="gpt-4o-mini")
TTS = ModelInfo(provider="cartesia", model="sonic-2")


@dataclass(frozen=True, slots=True)
class Mix:
    """The proportions of the simulated sessions."""

    interim_hz: float = 4.0
    """Interim transcripts per second while the user speaks."""
    user_speech_s: tuple[float, float] = (1.2, 3.0)
    agent_speech_s: tuple[float, float] = (1.5, 4.0)
    pause_s: tuple[float, float] = (0.3, 1.5)
    tool_rate: float = 0.15
    interruption_rate: float = 0.10
    false_interruption_rate: float = 0.03


class Session:
    """One simulated session: its ids, its next sequence, its running usage totals."""

    def __init__(self, session_id: str, rng: random.Random, mix: Mix = Mix()) -> None:
        self.id = session_id
        self.rng = rng
        self.mix = mix
        self.room = f"room-{session_id}"
        self.source = agent_source("bench-agent", "AW_bench")
        self.sequence = 0
        self.turn = 0
        self.usage = {"llm_in": 0, "llm_out": 0, "tts_chars": 0, "stt_s": 0.0}

    def event(self, payload: EventPayload, at: datetime) -> CloudEvent[Any]:
        """The next event of the session (sequence 1, 2, 3...) at `at`."""
        self.sequence += 1
        return new_event(payload, session_id=self.id, sequence=self.sequence,
                         source=self.source, subject=self.room, time=at)  # fmt: skip

    def opening(self, at: datetime) -> list[Step]:
        caller = f"caller-{self.id}"
        return [
            (0.0, SessionStarted(job_id=f"AJ_{self.id}", agent_name="bench-agent",
                                 worker_id="AW_bench", room_sid=f"RM_{self.id}",
                                 agent_id="assistant", participant_identity=caller,
                                 accepted_at=at, stt=STT, llm=LLM, tts=TTS)),
            (0.2, ParticipantJoined(identity=caller, sid=f"PA_{self.id}", name="Caller",
                                    kind="standard")),
            (0.05, TrackPublished(participant_identity=caller, participant_sid=f"PA_{self.id}",
                                  track_sid=f"TR_{self.id}_mic", kind="audio",
                                  source="microphone", mime_type="audio/opus")),
            (0.05, TrackPublished(participant_identity="agent", participant_sid="PA_agent",
                                  track_sid=f"TR_{self.id}_agent", kind="audio",
                                  source="microphone", local=True)),
            (0.1, AgentStateChanged(old_state="initializing", new_state="listening")),
        ]  # fmt: skip

    def closing(self) -> list[Step]:
        caller = f"caller-{self.id}"
        return [
            (0.5, ParticipantLeft(identity=caller, sid=f"PA_{self.id}",
                                  disconnect_reason="client_initiated")),
            (0.1, SessionClosed(reason="participant_disconnected")),
        ]  # fmt: skip

    def turn_steps(self, at: datetime) -> list[Step]:
        """One whole turn, user then agent, starting `at` (for metric timestamps)."""
        self.turn += 1
        turn = f"turn_{self.turn}"
        return [*self._user(turn, at), *self._agent(turn, at)]

    def _user(self, turn: str, at: datetime) -> list[Step]:
        rng, mix = self.rng, self.mix
        speech = rng.uniform(*mix.user_speech_s)
        words = [rng.choice(WORDS) for _ in range(max(3, int(speech * 3)))]
        steps: list[Step] = [(rng.uniform(*mix.pause_s), UserStateChanged(
            turn_id=turn, old_state="listening", new_state="speaking"))]  # fmt: skip
        interims = max(1, int(speech * mix.interim_hz))
        for i in range(1, interims + 1):
            text = " ".join(words[: max(1, len(words) * i // interims)])
            steps.append((1 / mix.interim_hz, UserTranscribed(
                turn_id=turn, transcript=text, is_final=False, language="en",
                confidence=round(rng.uniform(0.5, 0.9), 3))))  # fmt: skip
        final = " ".join(words)
        self.usage["stt_s"] += speech
        ends = at + timedelta(seconds=speech)
        steps += [
            (0.02, UserStateChanged(turn_id=turn, old_state="speaking", new_state="listening")),
            (0.05, MetricsCollected(turn_id=turn, metrics=SttMetrics(
                timestamp=ends, label="livekit.plugins.deepgram.stt.STT",
                request_id=f"stt_{self.id}_{turn}", duration=0.0, audio_duration=speech,
                streamed=True, provider="deepgram", model="nova-3"))),
            (0.15, UserTranscribed(turn_id=turn, transcript=final, is_final=True,
                                   language="en", confidence=round(rng.uniform(0.8, 1), 3))),
            (0.1, MetricsCollected(turn_id=turn, metrics=EouMetrics(
                timestamp=ends, end_of_utterance_delay=0.3, transcription_delay=0.2,
                on_user_turn_completed_delay=0.01, speech_id=f"speech_{turn}"))),
            (0.01, ConversationItemAdded(turn_id=turn, item_id=f"item_{turn}_user",
                role="user", text=final, transcript_confidence=0.93, metrics=MessageMetrics(
                    started_speaking_at=at, stopped_speaking_at=ends, transcription_delay=0.2,
                    end_of_turn_delay=0.3, on_user_turn_completed_delay=0.01, stt=STT))),
        ]  # fmt: skip
        return steps

    def _agent(self, turn: str, at: datetime) -> list[Step]:
        rng, mix = self.rng, self.mix
        steps: list[Step] = [
            (0.01, AgentStateChanged(turn_id=turn, old_state="listening", new_state="thinking")),
            (0.01, SpeechCreated(turn_id=turn, speech_id=f"speech_{turn}", user_initiated=False,
                                 source="generate_reply", allow_interruptions=True)),
            (0.4, self._llm(turn, at)),
        ]  # fmt: skip
        if rng.random() < mix.tool_rate:
            steps += [(0.15, self._tools(turn, at)), (0.35, self._llm(turn, at))]
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
        speech = rng.uniform(*mix.agent_speech_s)
        interrupted = rng.random() < mix.interruption_rate
        steps += [
            (0.3, AgentStateChanged(turn_id=turn, old_state="thinking", new_state="speaking")),
            (0.05, MetricsCollected(turn_id=turn, metrics=TtsMetrics(
                timestamp=at, label="livekit.plugins.cartesia.tts.TTS",
                request_id=f"tts_{self.id}_{turn}", ttfb=0.18, duration=speech * 0.4,
                audio_duration=speech, cancelled=interrupted, characters_count=len(answer),
                streamed=True, speech_id=f"speech_{turn}"))),
        ]  # fmt: skip
        if not interrupted and rng.random() < mix.false_interruption_rate:
            steps.append((speech / 2, AgentFalseInterruptionDetected(turn_id=turn, resumed=True)))
        spoken = speech / 2 if interrupted else speech
        self._count_usage(answer)
        steps += [
            (spoken, ConversationItemAdded(turn_id=turn, item_id=f"item_{turn}_agent",
                role="assistant", text=answer, interrupted=interrupted, agent_id="assistant",
                metrics=MessageMetrics(llm_node_ttft=0.41, llm_node_tps=44.0, tts_node_ttfb=0.18,
                                       e2e_latency=round(rng.uniform(0.6, 1.6), 3), llm=LLM,
                                       tts=TTS, provider_request_ids=(f"req_{turn}",)))),
            (0.01, AgentStateChanged(turn_id=turn, old_state="speaking", new_state="listening")),
            (0.01, self._usage()),
        ]  # fmt: skip
        return steps

    def _llm(self, turn: str, at: datetime) -> MetricsCollected:
        return MetricsCollected(turn_id=turn, metrics=LlmMetrics(
            timestamp=at, label="livekit.plugins.openai.llm.LLM",
            request_id=f"req_{self.id}_{turn}_{self.sequence}", duration=0.9,
            ttft=round(self.rng.uniform(0.25, 0.8), 3), cancelled=False, completion_tokens=40,
            prompt_tokens=500, prompt_cached_tokens=0, total_tokens=540, tokens_per_second=44.0,
            speech_id=f"speech_{turn}", provider="openai", model="gpt-4o-mini"))  # fmt: skip

    def _tools(self, turn: str, at: datetime) -> ToolsExecuted:
        call = f"call_{self.id}_{turn}"
        return ToolsExecuted(turn_id=turn, calls=(ToolCall(
            call_id=call, name="lookup_order", arguments='{"order": "A-1042"}',
            output='{"status": "shipped", "eta": "tomorrow"}', is_error=False,
            started_at=at, duration=0.12),))  # fmt: skip

    def _count_usage(self, answer: str) -> None:
        self.usage["llm_in"] += 500
        self.usage["llm_out"] += 40
        self.usage["tts_chars"] += len(answer)

    def _usage(self) -> UsageUpdated:
        u = self.usage
        return UsageUpdated(model_usage=(
            LlmUsage(provider="openai", model="gpt-4o-mini", input_tokens=int(u["llm_in"]),
                     output_tokens=int(u["llm_out"])),
            TtsUsage(provider="cartesia", model="sonic-2", characters_count=int(u["tts_chars"])),
            SttUsage(provider="deepgram", model="nova-3", audio_duration=round(u["stt_s"], 3)),
        ))  # fmt: skip


def session_steps(session: Session, start: datetime, *, turns: int | None) -> Iterator[Step]:
    """The session's steps: opening, `turns` turns (None: until the caller stops
    iterating), closing when `turns` is given. Metric timestamps assume real time."""
    yield from session.opening(start)
    elapsed = 0.6
    count = 0
    while turns is None or count < turns:
        steps = session.turn_steps(start + timedelta(seconds=elapsed))
        elapsed += sum(delay for delay, _ in steps)
        yield from steps
        count += 1
    yield from session.closing()
