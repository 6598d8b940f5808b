"""The pocketsphinx recognizer process behind `offline_stt` (run as a script, never imported
by the gateway: it needs only the standard library and pocketsphinx).

Why a process: pocketsphinx's bindings hold the GIL while they decode (a 15 s utterance
stalled an asyncio loop for 0.7 s in a thread), so the decoder runs beside the voice loop,
on the other core, and the loop only writes PCM to a pipe.

Protocol. Requests on stdin: a header `<cI` (operation byte, payload length), then the
payload. Events on stdout: one JSON object per line. Times are seconds of session audio.
  B  begin a session; payload {"session": n}; answers {"type": "begun", "session": n}
  A  PCM s16le mono 16 kHz; may answer start / interim / final / end events
  F  flush: finalize the current utterance now; answers {"type": "flushed"}
  R  recognize a whole utterance (PCM); answers {"type": "result", ...final fields}
Start-up ends with {"type": "ready"}; end of stdin ends the process.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Any, BinaryIO

from pocketsphinx import Decoder, Endpointer  # type: ignore[import-untyped]

HEADER = struct.Struct("<cI")
SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * 2
FRAMES_PER_SECOND = 100  # pocketsphinx's default -frate
_FILLERS = frozenset({"<s>", "</s>", "<sil>"})
_DECODE_BATCH_BYTES = BYTES_PER_SECOND // 10  # feed the decoder ~100 ms at a time


class Recognizer:
    """Endpointing (pocketsphinx's WebRTC VAD) plus incremental decoding of each utterance."""

    def __init__(self, decoder: Decoder, out: BinaryIO, options: dict[str, Any]) -> None:
        self._decoder = decoder
        self._out = out
        self._window = float(options.get("endpoint_window", 0.3))
        self._ratio = float(options.get("endpoint_ratio", 0.9))
        self._vad_mode = int(options.get("vad_mode", 0))
        self._interim_interval = float(options.get("interim_interval", 0.3))
        self._max_utterance = float(options.get("max_utterance", 20.0))
        self._padding = float(options.get("prefix_padding", 0.3))
        self._in_utt = False
        self._initial_cmn = decoder.get_cmn()
        self.begin(session=0, announce=False)

    def begin(self, *, session: int, announce: bool = True) -> None:
        if self._in_utt:  # a session cut short mid-utterance
            self._end_decoding()
            self._in_utt = False
        # the live cepstral mean adapts to a speaker; every session starts from the model's,
        # so the same audio gives the same words whatever came before
        self._decoder.set_cmn(self._initial_cmn)
        self._consumed = 0  # bytes of session audio read so far
        self._recent = bytearray()  # the latest audio read
        self._recent_end = 0  # session byte offset where `_recent` ends
        self._reset_endpointer()
        if announce:
            self._emit(type="begun", session=session)

    def _reset_endpointer(self) -> None:
        self._endpointer = Endpointer(
            window=self._window,
            ratio=self._ratio,
            vad_mode=self._vad_mode,
            sample_rate=SAMPLE_RATE,
        )
        self._ep_base = self._consumed / BYTES_PER_SECOND  # the endpointer's time zero
        self._carry = b""

    def audio(self, pcm: bytes) -> None:
        data = self._carry + pcm
        size = self._endpointer.frame_bytes
        usable = len(data) - len(data) % size
        self._carry = data[usable:]
        self._remember(data[:usable])
        for offset in range(0, usable, size):
            self._consumed += size
            was_in_speech = self._endpointer.in_speech
            speech = self._endpointer.process(data[offset : offset + size])
            if speech is None:
                continue
            if not was_in_speech:
                self._start_utterance()
            self._feed(speech)
            if not self._endpointer.in_speech:
                self._end_utterance(self._ep_base + self._endpointer.speech_end)

    def _remember(self, pcm: bytes) -> None:
        self._recent += pcm
        self._recent_end += len(pcm)
        keep = int((self._window + self._padding + 0.5) * BYTES_PER_SECOND)
        if len(self._recent) > 2 * keep:
            del self._recent[:-keep]

    def _prefix(self, speech_start: float) -> bytes:
        """The audio just before the endpointer's segment: it trims soft onsets (the
        closure of a 'k'), and a decoder that misses them hears "and" for "can"."""
        recent_begin = self._recent_end - len(self._recent)
        start = int(speech_start * SAMPLE_RATE) * 2 - recent_begin
        begin = max(start - int(self._padding * SAMPLE_RATE) * 2, 0)
        return bytes(self._recent[begin : max(start, begin)])

    def flush(self) -> None:
        self._remember(self._carry)
        self._consumed += len(self._carry)
        if self._endpointer.in_speech:
            # end_stream wants at least one sample: a flush on a frame boundary has none
            rest = self._endpointer.end_stream(self._carry or bytes(2))
            if rest:
                self._feed(rest)
            self._end_utterance(self._consumed / BYTES_PER_SECOND)
        self._reset_endpointer()
        self._emit(type="flushed")

    def recognize(self, pcm: bytes) -> None:
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._end_decoding()
        self._emit(type="result", **self._final_fields(0.0))

    def _end_decoding(self) -> None:
        self._decoder.end_utt()
        if "nan" in self._decoder.get_cmn():
            # an utterance of digital silence leaves a mean of NaN, and every later
            # utterance decodes to garbage; start over from the model's
            self._decoder.set_cmn(self._initial_cmn)

    def _start_utterance(self) -> None:
        self._utt_start = self._ep_base + self._endpointer.speech_start
        self._pending = bytearray()
        self._since_interim = 0
        self._utt_bytes = 0
        self._last_interim = ""
        self._decoder.start_utt()
        self._in_utt = True
        self._emit(type="start", speech_start=round(self._utt_start, 3))
        padding = self._prefix(self._utt_start)
        self._utt_start -= len(padding) / BYTES_PER_SECOND  # the decoder's time zero
        self._pending += padding

    def _feed(self, speech: bytes) -> None:
        self._pending += speech
        self._since_interim += len(speech)
        self._utt_bytes += len(speech)
        if len(self._pending) >= _DECODE_BATCH_BYTES:
            self._decoder.process_raw(bytes(self._pending))
            self._pending.clear()
        if self._since_interim >= self._interim_interval * BYTES_PER_SECOND:
            self._since_interim = 0
            self._interim()
        if self._utt_bytes >= self._max_utterance * BYTES_PER_SECOND:
            # a very long segment (noise, a monologue): finalize it, keep listening
            self._finalize()
            self._start_utterance_quietly()

    def _interim(self) -> None:
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if text and text != self._last_interim:
            self._last_interim = text
            self._emit(type="interim", text=text)

    def _end_utterance(self, speech_end: float) -> None:
        self._finalize()
        self._in_utt = False
        self._emit(type="end", speech_end=round(speech_end, 3))

    def _finalize(self) -> None:
        if self._pending:
            self._decoder.process_raw(bytes(self._pending))
            self._pending.clear()
        self._end_decoding()
        self._emit(type="final", **self._final_fields(self._utt_start))

    def _start_utterance_quietly(self) -> None:
        self._utt_start = self._consumed / BYTES_PER_SECOND
        self._utt_bytes = 0
        self._last_interim = ""
        self._decoder.start_utt()

    def _final_fields(self, utt_start: float) -> dict[str, Any]:
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        words: list[tuple[str, float, float]] = []
        posteriors: list[float] = []
        for seg in self._decoder.seg():
            word = seg.word
            if word in _FILLERS or word.startswith(("[", "+")):
                continue
            start = round(utt_start + seg.start_frame / FRAMES_PER_SECOND, 3)
            end = round(utt_start + (seg.end_frame + 1) / FRAMES_PER_SECOND, 3)
            words.append((word.split("(")[0], start, end))
            posteriors.append(min(max(seg.prob, 0.0), 1.0))
        confidence = sum(posteriors) / len(posteriors) if posteriors else 0.0
        start = words[0][1] if words else utt_start
        end = words[-1][2] if words else utt_start
        return {"text": text, "confidence": confidence, "start": start, "end": end, "words": words}

    def _emit(self, **event: Any) -> None:
        event["at"] = round(self._consumed / BYTES_PER_SECOND, 3)
        self._out.write(json.dumps(event).encode() + b"\n")
        self._out.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def serve(recognizer: Recognizer, stdin: BinaryIO) -> None:
    while (header := _read_exact(stdin, HEADER.size)) is not None:
        op, size = HEADER.unpack(header)
        payload = _read_exact(stdin, size) if size else b""
        if payload is None:
            return
        if op == b"A":
            recognizer.audio(payload)
        elif op == b"B":
            recognizer.begin(session=int(json.loads(payload)["session"]))
        elif op == b"F":
            recognizer.flush()
        elif op == b"R":
            recognizer.recognize(payload)
        else:
            raise ValueError(f"unknown operation {op!r}")


def main() -> None:
    options: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    # events get their own copy of stdout; anything else written to fd 1 goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    config: dict[str, Any] = {"samprate": SAMPLE_RATE, "loglevel": "FATAL"}
    config.update(options.get("decoder", {}))
    recognizer = Recognizer(Decoder(**config), out, options)
    recognizer._emit(type="ready")
    serve(recognizer, sys.stdin.buffer)


if __name__ == "__main__":
    main()
