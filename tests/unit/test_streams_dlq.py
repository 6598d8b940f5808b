"""Dead letters as Kafka records: original bytes, reason and source headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.unit.test_streams_support import BAD_KINDS, EXPECTED_REASON, all_events, bad_body
from turnlog.schemas import SchemaError, decode
from turnlog.streams.dlq import (
    MAX_MESSAGE_CHARS,
    MAX_VALUE_BYTES,
    dead_letter_record,
    decoded_headers,
)
from turnlog.streams.records import DeadLetter, RawRecord

pytestmark = pytest.mark.unit

AT = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)


def letter_for(value: bytes, **record: object) -> DeadLetter:
    raw = RawRecord(
        topic="p.turnlog.events", partition=7, offset=4242, key=b"sess-1", value=value,
        headers=(("traceparent", b"00-abc-01"),), timestamp=1.0,
    )  # fmt: skip
    try:
        decode(value)
    except SchemaError as error:
        return DeadLetter(raw, error.reason, type(error).__name__, error.message, "decode")
    raise AssertionError("the body decoded")


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_keeps_its_bytes_and_says_why(kind: str) -> None:
    body = bad_body(kind, all_events()[3])
    out = dead_letter_record(letter_for(body), topic="p.turnlog.events.dlq", at=AT)
    headers = decoded_headers(out.headers)
    assert out.topic == "p.turnlog.events.dlq"
    assert out.value == body
    assert out.key == b"sess-1"
    assert headers["turnlog-dlq-reason"] == EXPECTED_REASON[kind]
    assert headers["turnlog-dlq-exception"].endswith("Error")
    assert headers["turnlog-dlq-source-topic"] == "p.turnlog.events"
    assert headers["turnlog-dlq-source-partition"] == "7"
    assert headers["turnlog-dlq-source-offset"] == "4242"
    assert headers["turnlog-dlq-at"] == "2025-03-03T09:30:00.000000+00:00"
    assert headers["turnlog-dlq-stage"] == "decode"
    assert len(headers["turnlog-dlq-message"]) <= MAX_MESSAGE_CHARS
    assert ("traceparent", b"00-abc-01") in out.headers  # the original headers follow
    assert "turnlog-dlq-truncated" not in headers


def test_a_body_too_large_for_the_dlq_is_truncated_and_says_so() -> None:
    body = b"x" * (MAX_VALUE_BYTES + 10)
    out = dead_letter_record(letter_for(body), topic="dlq", at=AT)
    assert len(out.value) == MAX_VALUE_BYTES
    assert decoded_headers(out.headers)["turnlog-dlq-truncated"] == str(len(body))


def test_a_redriven_dead_letter_carries_only_the_new_reason() -> None:
    old = RawRecord("t", 0, 1, None, b"{", (("turnlog-dlq-reason", b"too_large"),))
    redriven = DeadLetter(old, "malformed", "MalformedEventError", "not JSON", "decode")
    out = dead_letter_record(redriven, topic="dlq", at=AT)
    reasons = [value for name, value in out.headers if name == "turnlog-dlq-reason"]
    assert reasons == [b"malformed"]


def test_a_long_message_is_cut_to_one_line() -> None:
    letter = DeadLetter(letter_for(b"{").record, "projection_failed", "ValueError",
                        "line\n" * 1000, "postgres")
    message = decoded_headers(dead_letter_record(letter, topic="dlq", at=AT).headers)[
        "turnlog-dlq-message"
    ]
    assert "\n" not in message
    assert message.endswith("...")
