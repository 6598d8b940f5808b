"""Raw Kafka records to a `DecodedBatch`: the one decode step every projection shares.

Pure and thread-safe: the engine decodes the next batch on a thread of its own while the
projector applies the current one. A record `schemas.decode` refuses becomes a dead
letter with the error's reason. Each decoded record keeps its bytes as published
(`SourceRecord.value`) unless its type was upcast, so ClickHouse can ingest the JSON as
it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from turnlog.projections.records import SourceRecord
from turnlog.schemas import CATALOG, KEYS_TOPIC, SchemaError, decode
from turnlog.streams.projector import Decoded, DecodedBatch
from turnlog.streams.records import STAGE_DECODE, DeadLetter, RawRecord


def raw_record(message: Any) -> RawRecord:
    """The projections' view of an aiokafka `ConsumerRecord`."""
    headers = tuple((str(k), bytes(v or b"")) for k, v in (message.headers or ()))
    stamp = message.timestamp / 1000 if message.timestamp is not None else None
    return RawRecord(message.topic, message.partition, message.offset, message.key,
                     message.value, headers, stamp)  # fmt: skip


def decode_messages(messages: Iterable[Any]) -> DecodedBatch:
    """`decode_records` of aiokafka `ConsumerRecord`s."""
    return decode_records([raw_record(m) for m in messages])


def decode_records(records: Sequence[RawRecord]) -> DecodedBatch:
    """Decode `records` (`schemas.decode`); a `SchemaError` makes a dead letter."""
    batch = DecodedBatch(records=list(records))
    events, letters = batch.events, batch.dead_letters
    # how a superseded type looks in an event's bytes (its value is then re-encoded);
    # asked per batch, so an upcaster registered after import counts
    markers = tuple(f'"{old}"'.encode() for old in CATALOG.upcasts)
    for record in records:
        if record.value is None and record.topic.endswith(KEYS_TOPIC):
            continue  # an erased key's tombstone: the key store deleted it already
        body = record.value or b""
        try:
            event = decode(body)
        except SchemaError as error:
            letters.append(DeadLetter(
                record, error.reason, type(error).__name__, error.message, STAGE_DECODE
            ))  # fmt: skip
            continue
        as_published = not any(marker in body for marker in markers)
        source = SourceRecord(record.topic, record.partition, record.offset, event,
                              body if as_published else None)  # fmt: skip
        events.append(Decoded(record, source))
    return batch
