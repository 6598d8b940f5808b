"""The spool's bytes on disk: segment files of length-prefixed, checksummed records, and
the acknowledgement files beside them. Pure functions, no I/O.

Segment file (little endian throughout)::

    header  := b"TLSPOOL\\0" | format u16 (=1) | reserved u16 | reserved u32     16 bytes
    record  := body_len u32 | crc u32 | body
    crc     := zlib.crc32(body_len bytes + body)
    body    := version u8 | flags u8 | published_ns i64 | type_len u16 | key_len u32
               | id_len u16 | reason_len u32 | type | key | event id | reason | value

A crash can leave a torn tail: a record whose length runs past the end of the file, or
a tail of zeros after a power loss. Both fail the length or checksum test, so a torn tail
is detected and ignored, never mis-decoded. An invalid record followed by non-zero bytes
is corruption, reported as such. Dead-letter files use the same format, with `reason`.

Acknowledgement file (`<segment>.ack`): 16-byte entries ``offset u64 | crc u32 | magic
u32``, appended each time the acknowledged prefix of the segment grows; the last valid
entry wins.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from turnlog.agent_gateway.publisher.message import Message
from turnlog.schemas.codec import MAX_EVENT_BYTES

FILE_MAGIC: Final = b"TLSPOOL\x00"
FORMAT_VERSION: Final = 1
FILE_HEADER: Final = struct.Struct("<8sHHI")
HEADER_BYTES: Final = FILE_HEADER.size
_FILE_HEADER_BYTES: Final = FILE_HEADER.pack(FILE_MAGIC, FORMAT_VERSION, 0, 0)

_FRAME: Final = struct.Struct("<II")
_BODY: Final = struct.Struct("<BBqHIHI")
_RECORD_VERSION: Final = 1
FLAG_ISOLATE: Final = 0x01

MAX_BODY_BYTES: Final = 2 * MAX_EVENT_BYTES + 64 * 1024
"""Largest record body a segment may hold: an event of `MAX_EVENT_BYTES` and its
metadata, with room to spare. A length field above it is corruption."""
DEAD_LETTER_MAX_BODY_BYTES: Final = 256 * 1024 * 1024
"""Dead letters may keep events far over the limit (that is why they are there)."""

_ACK: Final = struct.Struct("<QII")
ACK_ENTRY_BYTES: Final = _ACK.size
_ACK_MAGIC: Final = 0x314B4341  # "ACK1"


def file_header() -> bytes:
    """The 16 bytes every segment and dead-letter file starts with."""
    return _FILE_HEADER_BYTES


def check_header(data: bytes) -> bool:
    """True when `data` starts with a spool file header of a format we read."""
    if len(data) < HEADER_BYTES:
        return False
    magic, version, _, _ = FILE_HEADER.unpack_from(data)
    return bool(magic == FILE_MAGIC and version == FORMAT_VERSION)


def encode_record(message: Message, *, reason: str = "") -> bytes:
    """One framed record: length, checksum, body."""
    kind = message.type.encode()
    event_id = message.event_id.encode()
    why = reason.encode()
    flags = FLAG_ISOLATE if message.isolate else 0
    body = b"".join((
        _BODY.pack(
            _RECORD_VERSION, flags, message.published_ns,
            len(kind), len(message.key), len(event_id), len(why),
        ),
        kind, message.key, event_id, why, message.value,
    ))
    length = len(body).to_bytes(4, "little")
    return _FRAME.pack(len(body), zlib.crc32(body, zlib.crc32(length))) + body


def encode_records(messages: list[Message]) -> bytes:
    return b"".join(encode_record(m) for m in messages)


class Tail(enum.Enum):
    """How a scan of a buffer ended."""

    CLEAN = "clean"
    """Every byte belonged to a complete, valid record (or the record limit was reached)."""
    INCOMPLETE = "incomplete"
    """The buffer ends inside a record: read more, or (at the end of the file) a torn tail."""
    INVALID = "invalid"
    """A record fails its length or checksum test; `is_torn` tells a crash from damage."""


@dataclass(slots=True)
class SpooledRecord:
    """A record read back: its byte range in the file, its message, and its reason (only
    set in dead-letter files)."""

    start: int
    end: int
    message: Message
    reason: str


@dataclass(frozen=True, slots=True)
class Scan:
    records: list[SpooledRecord]
    stop: int
    """File offset right after the last valid record."""
    tail: Tail
    needed: int
    """With `Tail.INCOMPLETE`: bytes from `stop` the next record needs."""


def scan(
    data: bytes,
    *,
    base: int,
    max_records: int | None = None,
    max_body: int = MAX_BODY_BYTES,
) -> Scan:
    """Decode the records of `data`, which starts at file offset `base`. The drain runs
    this for every spooled event: plain `bytes` slicing, no memoryviews, positional
    constructors (half the cost of the straightforward version)."""
    pos, size = 0, len(data)
    limit = size if max_records is None else max_records
    records: list[SpooledRecord] = []
    frame, crc32, frame_size = _FRAME.unpack_from, zlib.crc32, _FRAME.size
    while pos < size:
        if len(records) >= limit:
            return Scan(records, base + pos, Tail.CLEAN, 0)
        if size - pos < frame_size:
            return Scan(records, base + pos, Tail.INCOMPLETE, frame_size)
        length, crc = frame(data, pos)
        if length < _BODY.size or length > max_body:
            return Scan(records, base + pos, Tail.INVALID, 0)
        end = pos + frame_size + length
        if end > size:
            return Scan(records, base + pos, Tail.INCOMPLETE, frame_size + length)
        body = data[pos + frame_size:end]
        decoded = _decode_body(body) if crc32(body, crc32(data[pos:pos + 4])) == crc else None
        if decoded is None:
            return Scan(records, base + pos, Tail.INVALID, 0)
        records.append(SpooledRecord(base + pos, base + end, decoded[0], decoded[1]))
        pos = end
    return Scan(records, base + pos, Tail.CLEAN, 0)


def _decode_body(body: bytes) -> tuple[Message, str] | None:
    version, flags, published_ns, type_len, key_len, id_len, reason_len = _BODY.unpack_from(body)
    a = _BODY.size
    b = a + type_len
    c = b + key_len
    d = c + id_len
    e = d + reason_len
    if version != _RECORD_VERSION or e > len(body):
        return None
    try:
        message = Message(body[a:b].decode(), body[b:c], body[e:], body[c:d].decode(),
                          published_ns, bool(flags & FLAG_ISOLATE))
        return message, body[d:e].decode()
    except UnicodeDecodeError:
        return None


def is_torn(rest: bytes, tail: Tail) -> bool:
    """Given everything from the first bad record to the end of the file: is it what a
    crash leaves (a record cut short, or zeros), rather than damage in the middle?"""
    if tail is Tail.INCOMPLETE:
        return True
    after_frame = rest[_FRAME.size:]
    return after_frame == bytes(len(after_frame))


def iter_file(data: bytes, *, max_body: int = MAX_BODY_BYTES) -> Iterator[SpooledRecord]:
    """Every valid record of a whole spool or dead-letter file (for tools and tests)."""
    if not check_header(data):
        return
    yield from scan(data[HEADER_BYTES:], base=HEADER_BYTES, max_body=max_body).records


def encode_ack(offset: int) -> bytes:
    packed = offset.to_bytes(8, "little")
    return _ACK.pack(offset, zlib.crc32(packed), _ACK_MAGIC)


def decode_acks(data: bytes) -> int | None:
    """The last valid acknowledged offset of an ack file, or None."""
    count = len(data) // _ACK.size
    for index in range(count - 1, -1, -1):
        offset, crc, magic = _ACK.unpack_from(data, index * _ACK.size)
        if magic == _ACK_MAGIC and zlib.crc32(offset.to_bytes(8, "little")) == crc:
            return int(offset)
    return None
