"""A whole offline voice session in one process: the tutor agent in an AgentSession with the
offline providers (pocketsphinx -> template tutor -> Festival), a microphone that plays
Festival-spoken questions in real time, and a speaker that keeps what the agent says.

This is the e2e test's path without the LiveKit room: the session's own VAD and turn
detection, interim and final transcripts, real tool calls, and synthesized answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from livekit import rtc
from livekit.agents import (
    AgentSession,
    ConversationItemAddedEvent,
    FunctionToolsExecutedEvent,
    UserInputTranscribedEvent,
    llm,
)
from livekit.agents.voice import io

from examples.tutor.agent import TutorAgent, assess, example_for
from turnlog.agent_gateway.providers import Providers, build_providers, load_provider_settings

pytestmark = pytest.mark.integration

ROOM_RATE = 48000  # what a LiveKit room delivers
FRAME = ROOM_RATE // 100  # 10 ms
REPLY_TIMEOUT = 20.0


class ScriptedMicrophone(io.AudioInput):
    """10 ms frames at 48 kHz in real time: silence, or the speech `say` queued."""

    def __init__(self) -> None:
        super().__init__(label="scripted-microphone")
        self._pending = np.zeros(0, dtype=np.int16)
        self._started: float | None = None
        self._frames = 0

    def say(self, speech: rtc.AudioFrame) -> None:
        resampler = rtc.AudioResampler(speech.sample_rate, ROOM_RATE, num_channels=1)
        frames = [*resampler.push(speech), *resampler.flush()]
        samples = np.frombuffer(rtc.combine_audio_frames(frames).data, dtype=np.int16)
        self._pending = np.concatenate([self._pending, samples])

    async def __anext__(self) -> rtc.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.time()
        await asyncio.sleep(max(0.0, self._started + self._frames / 100 - loop.time()))
        self._frames += 1
        chunk = self._pending[:FRAME]
        self._pending = self._pending[FRAME:]
        data = np.zeros(FRAME, dtype=np.int16)
        data[: len(chunk)] = chunk
        return rtc.AudioFrame(data.tobytes(), ROOM_RATE, 1, FRAME)


class RecordingSpeaker(io.AudioOutput):
    """Plays instantly and keeps every frame, so each reply ends as soon as it is spoken."""

    def __init__(self) -> None:
        super().__init__(label="recording-speaker", capabilities=io.AudioOutputCapabilities(False))
        self.frames: list[rtc.AudioFrame] = []
        self._segment = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._segment == 0.0:
            self.on_playback_started(created_at=asyncio.get_running_loop().time())
        await super().capture_frame(frame)
        self.frames.append(frame)
        self._segment += frame.duration

    def flush(self) -> None:
        super().flush()
        played, self._segment = self._segment, 0.0
        self.on_playback_finished(playback_position=played, interrupted=False)

    def clear_buffer(self) -> None:
        pass


class Conversation:
    """What the session reported: transcripts, chat items, tool executions."""

    def __init__(self, session: AgentSession[Any]) -> None:
        self.transcripts: list[UserInputTranscribedEvent] = []
        self.items: list[llm.ChatItem] = []
        self.tools: list[FunctionToolsExecutedEvent] = []
        self._changed = asyncio.Event()
        session.on("user_input_transcribed", self._on_transcript)
        session.on("conversation_item_added", self._on_item)
        session.on("function_tools_executed", self.tools.append)

    def _on_transcript(self, event: UserInputTranscribedEvent) -> None:
        self.transcripts.append(event)

    def _on_item(self, event: ConversationItemAddedEvent) -> None:
        self.items.append(event.item)
        self._changed.set()

    def replies(self) -> list[str]:
        return [
            item.text_content or ""
            for item in self.items
            if item.type == "message" and item.role == "assistant"
        ]

    async def next_reply(self, count: int) -> str:
        """Wait for the `count`-th assistant message."""
        async with asyncio.timeout(REPLY_TIMEOUT):
            while len(self.replies()) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.replies()[count - 1]


@pytest_asyncio.fixture
async def providers() -> AsyncIterator[Providers]:
    built = build_providers(load_provider_settings())
    yield built
    await built.aclose()


QUESTIONS = (
    "what is the capital of france",
    "can you give me an example of photosynthesis",
    "please check my understanding of fractions",
)


async def talk(
    providers: Providers, questions: dict[str, rtc.AudioFrame]
) -> tuple[Conversation, RecordingSpeaker]:
    """Start the tutor, wait for its greeting, then ask each question and await the reply."""
    microphone, speaker = ScriptedMicrophone(), RecordingSpeaker()
    session: AgentSession[None] = AgentSession(
        stt=providers.stt,
        llm=providers.llm,
        tts=providers.tts,
        vad=providers.vad,
        turn_handling={"turn_detection": "vad"},
    )
    conversation = Conversation(session)
    session.input.audio = microphone
    session.output.audio = speaker
    await session.start(TutorAgent())
    try:
        await conversation.next_reply(1)
        for number, speech in enumerate(questions.values(), start=2):
            microphone.say(speech)
            await conversation.next_reply(number)
    finally:
        await session.aclose()
    return conversation, speaker


@pytest.mark.asyncio
async def test_offline_tutor_session_by_voice(providers: Providers) -> None:
    questions = {text: await providers.tts.synthesize(text).collect() for text in QUESTIONS}

    conversation, speaker = await talk(providers, questions)

    user_turns = [
        item.text_content
        for item in conversation.items
        if item.type == "message" and item.role == "user"
    ]
    assert user_turns == list(QUESTIONS)
    assert [t.transcript for t in conversation.transcripts if t.is_final] == list(QUESTIONS)
    first_final = next(i for i, t in enumerate(conversation.transcripts) if t.is_final)
    assert any(not t.is_final for t in conversation.transcripts[:first_final])

    greeting, *answers = conversation.replies()
    assert greeting.startswith("Hello! I'm your tutor.")
    assert answers == [
        "The capital of France is Paris. Would you like an example?",
        f"Here is an example. {example_for('photosynthesis')} What would you like to try next?",
        f"{assess('fractions', '')} What would you like to try next?",
    ]
    calls = [(c.name, c.arguments) for event in conversation.tools for c in event.function_calls]
    assert calls == [
        ("provide_example", '{"topic": "photosynthesis"}'),
        ("check_understanding", '{"answer": "", "topic": "fractions"}'),
    ]

    assert {frame.sample_rate for frame in speaker.frames} == {providers.tts.sample_rate}
    assert sum(frame.duration for frame in speaker.frames) > 15.0  # four spoken replies
