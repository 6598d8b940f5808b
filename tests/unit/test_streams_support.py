"""Helpers of the streams tests (no tests here): the recorded sessions as raw Kafka
records, renamed copies of them, and one bad record of each kind the DLQ must take."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Any

from tests.fixtures.make_sessions import load
from turnlog.schemas import (
    EVENTS_TOPIC,
    CloudEvent,
    UserTranscribed,
    derived_event_id,
    encode,
    new_event,
)
from turnlog.streams.records import RawRecord

SESSIONS = load()
"""The recorded sessions (tests/fixtures/sessions/*.jsonl) by name, in sequence order."""
PARTITIONS = 12

BAD_KINDS = ("bad_json", "unknown_type", "missing_field", "oversized", "invalid_utf8")
EXPECTED_REASON = {
    "bad_json": "malformed",
    "unknown_type": "unknown_type",
    "missing_field": "invalid_payload",
    "oversized": "too_large",
    "invalid_utf8": "malformed",
}
OVERSIZED_BYTES = 1_300_000
"""Over the catalog's 1 MiB event limit, under the events topic's 2 MiB message limit."""


def all_events(sessions: dict[str, list[CloudEvent[Any]]] | None = None) -> list[CloudEvent[Any]]:
    """Every event of the sessions, by time (as the gateway would have published them)."""
    chosen = SESSIONS if sessions is None else sessions
    events = [e for session in chosen.values() for e in session]
    return sorted(events, key=lambda e: (e.time, e.sessionid, e.sequence))


def renamed(events: Iterable[CloudEvent[Any]], suffix: str) -> list[CloudEvent[Any]]:
    """Copies of `events` in sessions of their own (`<session id><suffix>`), ids derived
    as the fixtures derive theirs."""
    copies = []
    for event in events:
        session_id = event.sessionid + suffix
        copies.append(new_event(
            event.data, session_id=session_id, sequence=event.sequence, source=event.source,
            subject=event.subject, time=event.time,
            event_id=derived_event_id(f"{session_id}/{event.sequence}", event.time),
        ))  # fmt: skip
    return copies


def partition_of(key: str) -> int:
    """A stable partition for a session (tests that build records without Kafka)."""
    return zlib.crc32(key.encode()) % PARTITIONS


def as_raw(
    bodies: Iterable[tuple[str, bytes]], *, topic: str = EVENTS_TOPIC
) -> list[RawRecord]:
    """(key, body) pairs as consumed records: offsets counted per partition."""
    offsets: dict[int, int] = {}
    records = []
    for key, body in bodies:
        partition = partition_of(key)
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        records.append(RawRecord(topic, partition, offset, key.encode(), body,
                                 (("origin", b"test"),), 1_700_000_000.0))
    return records


def bodies(events: Iterable[CloudEvent[Any]]) -> list[tuple[str, bytes]]:
    return [(e.sessionid, encode(e)) for e in events]


def bad_body(kind: str, template: CloudEvent[Any]) -> bytes:
    """One body of `kind` (see BAD_KINDS), built from a good event of the log."""
    good = json.loads(encode(template))
    if kind == "bad_json":
        return encode(template)[:40]
    if kind == "unknown_type":
        good["type"] = "turnlog.nobody.knows.v1"
        return json.dumps(good).encode()
    if kind == "missing_field":
        item = next(e for e in all_events() if e.type == "turnlog.conversation.item_added.v1")
        good = json.loads(encode(item))
        del good["data"]["role"]
        return json.dumps(good).encode()
    if kind == "oversized":
        huge = UserTranscribed(transcript="la " * (OVERSIZED_BYTES // 3), is_final=True)
        good["type"], good["data"] = huge.TYPE, huge.model_dump(mode="json")
        return json.dumps(good).encode()
    if kind == "invalid_utf8":
        return b'{"specversion": "1.0", "type": "turnlog.error.v1", "id": "\xff\xfe\xfa"}'
    raise ValueError(kind)


def mixed_bodies(events: list[CloudEvent[Any]], *, every: int = 100) -> list[tuple[str, bytes]]:
    """`events` with one bad record of each kind after every `every - 1` good ones (1 in
    `every`), keyed by the session of the good event before it."""
    mixed: list[tuple[str, bytes]] = []
    kinds = iter(BAD_KINDS)
    for i, event in enumerate(events, start=1):
        mixed.append((event.sessionid, encode(event)))
        if i % (every - 1) == 0:
            kind = next(kinds, None)
            if kind is not None:
                mixed.append((event.sessionid, bad_body(kind, event)))
    return mixed

