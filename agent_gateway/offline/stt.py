"""Offline speech-to-text: pocketsphinx with the US English model that ships in its wheel.

Streaming like the cloud plugins: START_OF_SPEECH when pocketsphinx's endpointer (a WebRTC
VAD over a 0.3 s window) opens a segment, INTERIM_TRANSCRIPT with the partial hypothesis
every `interim_interval` seconds of speech, FINAL_TRANSCRIPT then END_OF_SPEECH when the
segment closes (~0.3 s after the last word), RECOGNITION_USAGE with the audio duration.
Decoding runs in a recognizer process (`sphinx_worker.py`) so the voice loop never waits
on it; input is resampled to 16 kHz mono by `RecognizeStream`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any, Never

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer

from turnlog.agent_gateway.offline.sphinx_process import SphinxPool, SphinxProcess

SAMPLE_RATE = 16000
LANGUAGE = LanguageCode("en-US")
USAGE_REPORT_INTERVAL = 5.0
"""Seconds of audio after which usage is reported even while the user keeps talking."""


@dataclass(frozen=True)
class SphinxOptions:
    """Endpointing and decoding options of the recognizer process."""

    interim_interval: float = 0.3
    """Seconds of speech between two interim hypotheses."""
    endpoint_window: float = 0.3
    """Seconds of audio the endpointer looks at to open or close a segment."""
    endpoint_ratio: float = 0.9
    """Fraction of the window that must be speech (or silence) to switch."""
    vad_mode: int = 0
    """WebRTC VAD aggressiveness, 0 (loose) to 3 (strict)."""
    prefix_padding: float = 0.3
    """Seconds of audio before the segment that the decoder hears too: the endpointer
    clips soft onsets ("can" became "and" without it)."""
    max_utterance: float = 20.0
    """Seconds after which a segment is finalized even if the speaker goes on."""


class OfflineSTT(stt.STT[Never]):  # no events beyond the base ones
    """A `livekit.agents.stt.STT` on pocketsphinx; no key, no network."""

    def __init__(self, *, options: SphinxOptions | None = None) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self._options = options or SphinxOptions()
        self._pool = SphinxPool(asdict(self._options))

    @property
    def model(self) -> str:
        return "en-us"

    @property
    def provider(self) -> str:
        return "pocketsphinx"

    @property
    def options(self) -> SphinxOptions:
        return self._options

    def prewarm(self) -> None:
        self._pool.prewarm()

    async def aclose(self) -> None:
        await self._pool.aclose()

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> OfflineSpeechStream:
        return OfflineSpeechStream(stt=self, pool=self._pool, conn_options=conn_options)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        pcm = _to_pcm16k_mono(buffer)
        process = await self._pool.acquire()
        healthy = False
        try:
            await process.begin(self._pool.next_session())
            process.send(b"R", pcm)
            await process.drain()
            result = await _next_of_type(process, "result")
            healthy = True
        finally:
            await self._pool.release(process, reusable=healthy)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid("sphinx_"),
            alternatives=[speech_data(result, offset=0.0)],
        )


class OfflineSpeechStream(stt.RecognizeStream):
    """One recognition session on one recognizer process."""

    def __init__(
        self, *, stt: OfflineSTT, pool: SphinxPool, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._pool = pool
        self._request_id = utils.shortuuid("sphinx_")
        self._pushed = 0.0  # seconds of audio sent to the recognizer in this session
        self._unreported = 0.0  # seconds of audio not yet in a RECOGNITION_USAGE event
        self._flushes_sent = 0
        self._flushes_done = 0
        self._input_done = False

    async def _run(self) -> None:
        process = await self._pool.acquire()
        healthy = True
        try:
            await process.begin(self._pool.next_session())
            self._pushed = 0.0
            self._flushes_sent = self._flushes_done = 0
            self._input_done = False
            tasks = [
                asyncio.create_task(self._send(process), name="OfflineSTT.send"),
                asyncio.create_task(self._receive(process), name="OfflineSTT.receive"),
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                await utils.aio.cancel_and_wait(*tasks)
            self._report_usage()
        except Exception:
            healthy = False
            raise
        finally:
            # a cancelled stream leaves a healthy process: the next session skips its leftovers
            await self._pool.release(process, reusable=healthy)

    async def _send(self, process: SphinxProcess) -> None:
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                self._flushes_sent += 1
                process.send(b"F")
            else:
                process.send(b"A", _mono_bytes(item))
                self._pushed += item.duration
                self._unreported += item.duration
                if self._unreported >= USAGE_REPORT_INTERVAL:
                    self._report_usage()
            await process.drain()
        # the closing flush finalizes whatever is left; its answer ends `_receive`
        self._flushes_sent += 1
        process.send(b"F")
        self._input_done = True
        await process.drain()

    async def _receive(self, process: SphinxProcess) -> None:
        while True:
            event = await process.next_event()
            if event["type"] == "flushed":
                self._flushes_done += 1
                if self._input_done and self._flushes_done >= self._flushes_sent:
                    return
            else:
                self._on_recognizer_event(event)

    def _on_recognizer_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            self._emit(
                stt.SpeechEventType.START_OF_SPEECH,
                speech_start_time=self._wall_time(event["speech_start"]),
            )
        elif kind == "interim":
            self._emit(
                stt.SpeechEventType.INTERIM_TRANSCRIPT,
                alternatives=[stt.SpeechData(language=LANGUAGE, text=event["text"])],
            )
        elif kind == "final" and event["text"]:
            offset = self.start_time_offset
            self._emit(
                stt.SpeechEventType.FINAL_TRANSCRIPT,
                alternatives=[speech_data(event, offset=offset)],
            )
        elif kind == "end":
            self._emit(
                stt.SpeechEventType.END_OF_SPEECH,
                speech_end_time=self._wall_time(event["speech_end"]),
            )
            self._report_usage()

    def _emit(self, kind: stt.SpeechEventType, **fields: Any) -> None:
        self._event_ch.send_nowait(
            stt.SpeechEvent(type=kind, request_id=self._request_id, **fields)
        )

    def _wall_time(self, audio_time: float) -> float:
        """When a moment of session audio happened, assuming audio arrives in real time."""
        now = time.time()
        return min(now, now - (self._pushed - audio_time))

    def _report_usage(self) -> None:
        if self._unreported <= 0.0:
            return
        usage = stt.RecognitionUsage(audio_duration=self._unreported)
        self._unreported = 0.0
        self._emit(stt.SpeechEventType.RECOGNITION_USAGE, recognition_usage=usage)


def speech_data(result: dict[str, Any], *, offset: float) -> stt.SpeechData:
    """A final hypothesis of the recognizer as LiveKit's `SpeechData` (times in seconds
    from the start of the stream, shifted by the stream's `start_time_offset`)."""
    words = [
        TimedString(
            word, start_time=start + offset, end_time=end + offset, start_time_offset=offset
        )
        for word, start, end in result["words"]
    ]
    return stt.SpeechData(
        language=LANGUAGE,
        text=result["text"],
        start_time=result["start"] + offset,
        end_time=result["end"] + offset,
        confidence=result["confidence"],
        words=words,
    )


async def _next_of_type(process: SphinxProcess, kind: str) -> dict[str, Any]:
    while True:
        event = await process.next_event()
        if event["type"] == kind:
            return event


def _mono_bytes(frame: rtc.AudioFrame) -> bytes:
    if frame.num_channels == 1:
        return bytes(frame.data)
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return bytes(samples.mean(axis=1).astype(np.int16).tobytes())


def _to_pcm16k_mono(buffer: AudioBuffer) -> bytes:
    frame = rtc.combine_audio_frames(buffer)
    mono = _mono_bytes(frame)
    if frame.sample_rate == SAMPLE_RATE:
        return mono
    resampler = rtc.AudioResampler(
        frame.sample_rate, SAMPLE_RATE, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH
    )
    source = rtc.AudioFrame(mono, frame.sample_rate, 1, len(mono) // 2)
    frames = [*resampler.push(source), *resampler.flush()]
    return b"".join(f.data.tobytes() for f in frames)
