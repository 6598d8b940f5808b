"""Dead letters as Kafka records of `turnlog.events.dlq`.

The value is the original body, byte for byte (invalid UTF-8 and oversized bodies
included), the key the original key. Headers say why and where from; the original headers
follow. A body too large for the DLQ topic is truncated, and a header says so with the
original size. After a crash a record may be dead-lettered twice (at-least-once): the
source headers identify it, so consumers dedupe on (topic, partition, offset).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from turnlog.schemas.topics import DLQ_MAX_MESSAGE_BYTES
from turnlog.streams.records import DeadLetter, Headers, OutRecord

HEADER_PREFIX: Final = "turnlog-dlq-"
REASON: Final = "turnlog-dlq-reason"
EXCEPTION: Final = "turnlog-dlq-exception"
MESSAGE: Final = "turnlog-dlq-message"
STAGE: Final = "turnlog-dlq-stage"
SOURCE_TOPIC: Final = "turnlog-dlq-source-topic"
SOURCE_PARTITION: Final = "turnlog-dlq-source-partition"
SOURCE_OFFSET: Final = "turnlog-dlq-source-offset"
AT: Final = "turnlog-dlq-at"
TRUNCATED: Final = "turnlog-dlq-truncated"
"""Present only when the body was cut: the original size in bytes."""
HEADERS_DROPPED: Final = "turnlog-dlq-headers-dropped"
"""Present only when the original headers were too large to keep: their count."""

MAX_MESSAGE_CHARS: Final = 1000
MAX_ORIGINAL_HEADER_BYTES: Final = 64 * 1024
MAX_VALUE_BYTES: Final = DLQ_MAX_MESSAGE_BYTES - 256 * 1024
"""Room left in a DLQ record for key, headers and batch overhead."""


def dead_letter_record(letter: DeadLetter, *, topic: str, at: datetime) -> OutRecord:
    """The DLQ record of `letter`, for `topic` (the prefixed DLQ topic); `at` is when it
    was dead-lettered (aware)."""
    record = letter.record
    value = record.value or b""
    headers: list[tuple[str, bytes]] = [
        (REASON, letter.reason.encode()),
        (EXCEPTION, letter.exception.encode()),
        (MESSAGE, _truncate(letter.message).encode()),
        (STAGE, letter.stage.encode()),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (AT, at.isoformat(timespec="microseconds").encode()),
    ]
    if len(value) > MAX_VALUE_BYTES:
        headers.append((TRUNCATED, str(len(value)).encode()))
        value = value[:MAX_VALUE_BYTES]
    headers.extend(_original_headers(record.headers))
    return OutRecord(topic=topic, key=record.key, value=value, headers=tuple(headers))


def decoded_headers(headers: Headers) -> dict[str, str]:
    """A DLQ record's own headers as text (the last of each name), for readers and tests."""
    return {
        name: raw.decode(errors="replace")
        for name, raw in headers
        if name.startswith(HEADER_PREFIX)
    }


def _original_headers(original: Headers) -> list[tuple[str, bytes]]:
    # A re-driven dead letter carries our headers already: the new ones replace them.
    kept = [(name, value) for name, value in original if not name.startswith(HEADER_PREFIX)]
    if sum(len(name) + len(value) for name, value in kept) > MAX_ORIGINAL_HEADER_BYTES:
        return [(HEADERS_DROPPED, str(len(kept)).encode())]
    return kept


def _truncate(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 3] + "..."
