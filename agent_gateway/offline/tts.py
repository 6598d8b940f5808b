"""Offline text-to-speech: Festival's `text2wave` with the CMU SLT Arctic HTS voice.

Debian packages `festival` and `festvox-us-slt-hts` (installed by `infra/install.sh`).
Chosen over espeak-ng because pocketsphinx understands it almost word for word, so an
offline session can hear itself. Each request runs `text2wave` as a subprocess (about
0.3 s for a 2-3 s sentence once the voice is in the page cache; `prewarm` loads it), so
the voice loop never blocks; the session's `tts.StreamAdapter` sends a sentence at a time.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
from pathlib import Path
from typing import Never

from livekit.agents import APIConnectOptions, APIError, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from turnlog.agent_gateway.offline.spawn import spawn, stop
from turnlog.agent_gateway.providers.errors import ProviderConfigError

DEFAULT_VOICE = "cmu_us_slt_arctic_hts"
SAMPLE_RATE = 24000
FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices"))
_VOICE_NAME = re.compile(r"[a-z0-9_]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPEAKABLE = re.compile(r"[A-Za-z0-9]")
_SILENCE_SECONDS = 0.05


class OfflineTTS(tts.TTS[Never]):  # no events beyond the base ones
    """A `livekit.agents.tts.TTS` on Festival; no key, no network. 16-bit mono PCM."""

    def __init__(self, *, voice: str = DEFAULT_VOICE, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self._text2wave = find_text2wave()
        self._voice = check_voice(voice)
        self._prewarm_task: asyncio.Task[None] | None = None

    @property
    def model(self) -> str:
        return self._voice

    @property
    def provider(self) -> str:
        return "festival"

    def prewarm(self) -> None:
        """Run Festival once in the background: the first run reads the voice from disk
        (about 0.5 s more), and that should not delay the greeting."""
        if self._prewarm_task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._prewarm_task = loop.create_task(self._warm_up())

    async def _warm_up(self) -> None:
        proc = await spawn(
            *self.command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await proc.communicate(b"hello\n")
        finally:
            await stop(proc)

    async def aclose(self) -> None:
        if self._prewarm_task is not None:
            await utils.aio.cancel_and_wait(self._prewarm_task)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> FestivalChunkedStream:
        return FestivalChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def command(self) -> list[str]:
        """The `text2wave` command line: text on stdin, a RIFF WAV on stdout."""
        return [
            self._text2wave,
            "-eval",
            f"(voice_{self._voice})",
            "-F",
            str(self.sample_rate),
            "-o",
            "-",
        ]


class FestivalChunkedStream(tts.ChunkedStream):
    """One `text2wave` run for one piece of text."""

    def __init__(
        self, *, tts: OfflineTTS, input_text: str, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._festival = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid("festival_"),
            sample_rate=self._festival.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        text = _CONTROL.sub(" ", self.input_text).strip()
        pcm = await self._synthesize(text) if _SPEAKABLE.search(text) else b""
        if not pcm and text:
            # punctuation alone: Festival says nothing, and nothing is not an error
            pcm = bytes(2 * int(self._festival.sample_rate * _SILENCE_SECONDS))
        output_emitter.push(pcm)
        output_emitter.flush()

    async def _synthesize(self, text: str) -> bytes:
        proc = await spawn(
            *self._festival.command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(text.encode("utf-8", "replace") + b"\n"),
                self._conn_options.timeout,
            )
        except TimeoutError as e:
            raise APIError("text2wave timed out", retryable=True) from e
        finally:
            await stop(proc)  # a no-op but for an interruption or a timeout
        if proc.returncode != 0 or not out:
            detail = err.decode(errors="replace").strip()[:300]
            raise APIError(f"text2wave failed (exit {proc.returncode}): {detail}", retryable=False)
        return self._pcm_of(out)

    def _pcm_of(self, riff: bytes) -> bytes:
        rate, channels, width, pcm = parse_piped_wav(riff)
        if (rate, channels, width) != (self._festival.sample_rate, 1, 2):
            raise APIError(
                f"text2wave returned {rate} Hz, {channels} channel(s), {8 * width}-bit audio",
                retryable=False,
            )
        return pcm


def parse_piped_wav(riff: bytes) -> tuple[int, int, int, bytes]:
    """Sample rate, channels, bytes per sample and PCM of a RIFF WAV written to a pipe.

    Festival cannot seek back on a pipe to fill in the sizes, so the data chunk claims 0
    bytes (and `wave` reads nothing); the samples are everything after its header."""
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise APIError("text2wave returned no RIFF WAV", retryable=False)
    offset, fmt = 12, None
    while offset + 8 <= len(riff):
        chunk_id, size = struct.unpack_from("<4sI", riff, offset)
        body = offset + 8
        if chunk_id == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", riff, body)
            fmt = (rate, channels, bits // 8)
        elif chunk_id == b"data":
            if fmt is None:
                break
            end = body + size if 0 < size <= len(riff) - body else len(riff)
            return (*fmt, riff[body:end])
        offset = body + size + (size & 1)
    raise APIError("text2wave returned a WAV without fmt and data chunks", retryable=False)


def find_text2wave() -> str:
    path = shutil.which("text2wave")
    if path is None:
        raise ProviderConfigError(
            "TURNLOG_TTS=offline needs Festival's text2wave: "
            "apt-get install festival festvox-us-slt-hts"
        )
    return path


def check_voice(voice: str) -> str:
    """The voice name, once its Festival voice folder is known to exist."""
    if not _VOICE_NAME.fullmatch(voice):
        raise ProviderConfigError(
            f"TURNLOG_OFFLINE_TTS_VOICE={voice!r} is not a Festival voice name"
        )
    for root in FESTIVAL_VOICE_DIRS:
        if any(root.glob(f"*/{voice}")):
            return voice
    package = "festvox-us-slt-hts" if voice == DEFAULT_VOICE else "the package of that voice"
    raise ProviderConfigError(
        f"Festival voice {voice} is not installed (TURNLOG_OFFLINE_TTS_VOICE): "
        f"apt-get install festival {package}"
    )
