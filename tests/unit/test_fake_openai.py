"""The rules of the test's OpenAI-compatible server, which the example agents talk to."""

from __future__ import annotations

import io
import wave

import pytest

from tests.fixtures.fake_openai import GREETING, reply_to, tone_wav

pytestmark = pytest.mark.unit

TOOLS = [
    {"type": "function", "function": {"name": "transfer_to_billing", "parameters": {}}},
    {"type": "function", "function": {"name": "lookup_invoice", "parameters": {
        "type": "object", "properties": {"invoice_number": {"type": "string"}}}}},
]  # fmt: skip


def user(text: str) -> list[dict[str, object]]:
    return [{"role": "system", "content": "be nice"}, {"role": "user", "content": text}]


def test_a_tool_named_in_the_users_words_is_called_with_their_number() -> None:
    assert reply_to(user("transfer me to billing please"), TOOLS) == {
        "tool": "transfer_to_billing", "arguments": {}}
    assert reply_to(user("status of invoice 1042?"), TOOLS) == {
        "tool": "lookup_invoice", "arguments": {"invoice_number": "1042"}}


def test_otherwise_the_user_is_echoed_and_a_tool_result_is_read_out() -> None:
    assert reply_to(user("hello there"), TOOLS) == {"content": "You said: hello there"}
    assert reply_to(user("to be or not"), TOOLS) == {"content": "You said: to be or not"}
    result = [*user("x"), {"role": "tool", "tool_call_id": "c1", "content": "It was paid."}]
    assert reply_to(result, TOOLS) == {"content": "It was paid."}
    assert reply_to([{"role": "system", "content": "greet"}], TOOLS) == {"content": GREETING}


def test_speech_is_a_wav_of_the_asked_length() -> None:
    with wave.open(io.BytesIO(tone_wav(0.5))) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 24000)
        assert audio.getnframes() == 12000
