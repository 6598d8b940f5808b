"""Reading the WAV that Festival's text2wave writes to a pipe."""

from __future__ import annotations

import io
import struct
import wave

import pytest
from livekit.agents import APIError

from turnlog.agent_gateway.offline.tts import parse_piped_wav

pytestmark = pytest.mark.unit

PCM = struct.pack("<6h", 0, 1000, -1000, 32767, -32768, 7)


def wav_file(pcm: bytes, *, rate: int = 24000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def as_piped(riff: bytes) -> bytes:
    """What a writer that cannot seek leaves: zero in the RIFF and data sizes."""
    data_at = riff.index(b"data")
    return riff[:4] + b"\0\0\0\0" + riff[8 : data_at + 4] + b"\0\0\0\0" + riff[data_at + 8 :]


def test_a_piped_wav_keeps_every_sample() -> None:
    assert parse_piped_wav(as_piped(wav_file(PCM))) == (24000, 1, 2, PCM)


def test_a_seekable_wav_reads_the_same() -> None:
    assert parse_piped_wav(wav_file(PCM, rate=16000)) == (16000, 1, 2, PCM)


@pytest.mark.parametrize("body", [b"", b"garbage", b"RIFF\0\0\0\0WAVEdata\0\0\0\0" + PCM])
def test_anything_else_is_an_api_error(body: bytes) -> None:
    with pytest.raises(APIError):
        parse_piped_wav(body)
