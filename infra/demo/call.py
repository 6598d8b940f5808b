"""A demo voice call: a LiveKit client that speaks to the tutor agent and listens to it.

The client joins the room with a token (from our API), publishes a microphone track that
carries Festival-spoken questions between stretches of silence (10 ms frames in real time,
as a real microphone would, so the agent's VAD hears the end of each question), and
subscribes to the agent's audio. A turn is one question and the agent's spoken answer; its
latency is what the user hears: from the end of the question to the first audible frame of
the answer. The agent's state attribute (`lk.agent.state`) tells when an answer is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from livekit import rtc

from turnlog.infra.stack.errors import StackError

logger = logging.getLogger("turnlog.demo")

ROOM_RATE: Final = 48000
FRAME: Final = ROOM_RATE // 100  # 10 ms
AUDIBLE_RMS: Final = 300.0
"""RMS (16-bit samples) above which a received frame counts as speech; Opus keeps silence
near zero, Festival's speech is in the thousands."""
AGENT_STATE: Final = "lk.agent.state"


class DemoCallError(StackError):
    """The call did not go as a conversation should; the message says where it stopped."""


@dataclass(frozen=True)
class Turn:
    question: str
    asked_at: float
    """Monotonic time the last sample of the question was sent."""
    heard_after: float | None
    """Seconds from the end of the question to the first audible frame of the answer."""
    answer_seconds: float
    """Seconds of audible answer received."""


@dataclass
class CallResult:
    room: str
    turns: list[Turn] = field(default_factory=list)
    greeting_heard: bool = False

    @property
    def latencies(self) -> list[float]:
        return [t.heard_after for t in self.turns if t.heard_after is not None]


class Microphone:
    """A track source that plays queued speech, and silence otherwise, in real time."""

    def __init__(self) -> None:
        self.source = rtc.AudioSource(ROOM_RATE, 1, queue_size_ms=100)
        self._pending = np.zeros(0, dtype=np.int16)
        self._spoken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-microphone")

    async def say(self, speech: rtc.AudioFrame) -> float:
        """Queue `speech`, return when its last sample was sent (monotonic time)."""
        resampler = rtc.AudioResampler(speech.sample_rate, ROOM_RATE, num_channels=1)
        frames = [*resampler.push(speech), *resampler.flush()]
        samples = np.frombuffer(rtc.combine_audio_frames(frames).data, dtype=np.int16)
        self._spoken.clear()
        self._pending = np.concatenate([self._pending, samples])
        await self._spoken.wait()
        return time.monotonic()

    async def _run(self) -> None:
        while True:
            chunk, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            data = np.zeros(FRAME, dtype=np.int16)
            data[: len(chunk)] = chunk
            await self.source.capture_frame(rtc.AudioFrame(data.tobytes(), ROOM_RATE, 1, FRAME))
            if len(chunk) and not len(self._pending):
                self._spoken.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.source.aclose()


class AgentListener:
    """Follows the agent: its state, and when its audio becomes audible."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.state = ""
        self.first_audible: float | None = None
        """When the first audible frame since the last `answer` call arrived (monotonic)."""
        self.audible_seconds = 0.0
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        room.on("participant_attributes_changed", self._on_attributes)
        room.on("track_subscribed", self._on_track)

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if AGENT_STATE in changed:
            self.state = changed[AGENT_STATE]
            self._changed.set()

    def _on_track(
        self, track: rtc.Track, _: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            stream = rtc.AudioStream.from_track(track=track, sample_rate=ROOM_RATE, num_channels=1)
            self._tasks.append(asyncio.create_task(self._listen(stream)))

    async def _listen(self, stream: rtc.AudioStream) -> None:
        async for event in stream:
            samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
            if len(samples) and float(np.sqrt(np.mean(samples**2))) > AUDIBLE_RMS:
                if self.first_audible is None:
                    self.first_audible = time.monotonic()
                self.audible_seconds += event.frame.duration
                self._changed.set()
        await stream.aclose()

    async def wait(self, predicate: Callable[[], bool], *, within: float) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def answer(self, *, after: float, within: float) -> tuple[float | None, float]:
        """Wait until the agent spoke after `after` and is listening again: (seconds to
        the first audible frame, seconds of audible answer)."""
        self.first_audible = None
        heard_before = self.audible_seconds
        await self.wait(
            lambda: self.first_audible is not None and self.state == "listening", within=within
        )
        # the state may flip before the last frames arrive
        await asyncio.sleep(0.3)
        first = self.first_audible
        return (None if first is None else first - after), self.audible_seconds - heard_before

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def speak_questions(questions: Sequence[str]) -> dict[str, rtc.AudioFrame]:
    """Festival speech of each question (the voice the offline recognizer hears best)."""
    from turnlog.agent_gateway.offline.tts import OfflineTTS

    tts = OfflineTTS()
    try:
        return {q: await tts.synthesize(q).collect() for q in questions}
    finally:
        await tts.aclose()


async def hold_call(
    *,
    livekit_url: str,
    token: str,
    room_name: str,
    questions: dict[str, rtc.AudioFrame],
    reply_timeout: float = 45.0,
    greeting_timeout: float = 60.0,
) -> CallResult:
    """Join, wait for the agent's greeting, ask each question and hear its answer, leave."""
    result = CallResult(room=room_name)
    room = rtc.Room()
    listener = AgentListener(room)
    microphone = Microphone()
    await room.connect(livekit_url, token)
    try:
        track = rtc.LocalAudioTrack.create_audio_track("microphone", microphone.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        microphone.start()
        joined = time.monotonic()
        try:
            first, _ = await listener.answer(after=joined, within=greeting_timeout)
        except TimeoutError:
            raise DemoCallError(
                f"the agent did not greet within {greeting_timeout:.0f} s in room {room_name}: "
                "is the agent gateway registered under the token's agent name? (its log, "
                "and the LiveKit server's, say whether the job was dispatched)"
            ) from None
        result.greeting_heard = first is not None
        for question, speech in questions.items():
            asked_at = await microphone.say(speech)
            try:
                heard_after, seconds = await listener.answer(after=asked_at, within=reply_timeout)
            except TimeoutError:
                raise DemoCallError(
                    f"no answer to {question!r} within {reply_timeout:.0f} s (agent state: "
                    f"{listener.state or 'unknown'})"
                ) from None
            result.turns.append(Turn(question, asked_at, heard_after, seconds))
            logger.info("turn %d: %r answered after %s s", len(result.turns), question,
                        "?" if heard_after is None else f"{heard_after:.2f}")
    finally:
        await microphone.aclose()
        await listener.aclose()
        await room.disconnect()
    return result
