"""Derived records as Kafka records, for `turnlog.turns` and `turnlog.sessions`.

What is derived, and when, is `derived_state`'s (a per-session fold in `sequence` order);
this module only shapes its outputs for Kafka: a structured CloudEvent, keyed
`<session id>/<turn id>` for a turn and `<session id>` for a session summary, so a consumer
that keeps the latest record per key (the sessions topic is compacted) holds the final turn
and the final summary. Corrections of a record keep its key and raise its `revision`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from turnlog.schemas import STRUCTURED_CONTENT_TYPE, SessionSummarized, TurnCompleted, encode
from turnlog.streams.derived_model import SESSIONS_SOURCE, TURNS_SOURCE, Output
from turnlog.streams.records import OutRecord

__all__ = [
    "CONTENT_TYPE_HEADER",
    "SESSIONS_SOURCE",
    "TURNS_SOURCE",
    "derived_record",
    "derived_records",
]

CONTENT_TYPE_HEADER: Final = ("content-type", STRUCTURED_CONTENT_TYPE.encode())


def derived_record(output: Output, *, topic: str) -> OutRecord:
    """The Kafka record of one derived output: its key, the encoded CloudEvent."""
    return OutRecord(
        topic=topic,
        key=output.key.encode(),
        value=encode(output.event),
        headers=(CONTENT_TYPE_HEADER,),
    )


def derived_records(
    outputs: Iterable[Output], *, turns_topic: str, sessions_topic: str
) -> list[OutRecord]:
    """Each output as a record of its topic: turns to `turns_topic`, summaries to
    `sessions_topic`; any other payload is a programming error."""
    records: list[OutRecord] = []
    for output in outputs:
        data = output.event.data
        if isinstance(data, TurnCompleted):
            records.append(derived_record(output, topic=turns_topic))
        elif isinstance(data, SessionSummarized):
            records.append(derived_record(output, topic=sessions_topic))
        else:
            raise TypeError(f"not a derived record: {output.event.type}")
    return records
