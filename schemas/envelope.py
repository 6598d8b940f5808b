"""The CloudEvents 1.0 envelope, structured JSON mode, with Turnlog's extensions."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Final, Generic, Literal, Self, TypeVar
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from turnlog.schemas.base import TYPE_PATTERN, EventPayload, UtcDatetime

SPEC_VERSION: Final = "1.0"
DATA_CONTENT_TYPE: Final = "application/json"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
"""The Kafka `content-type` header of a structured-mode CloudEvent."""

UUID7_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
"""The form of the ids Turnlog generates (`new_event`, `derived_event_id`); decoding does
not require it."""
SOURCE_PATTERN: Final = r"^/(agents|streams)/[^/\s]+/[^/\s]+$"

P = TypeVar("P", bound=EventPayload)


def _absent(value: object) -> bool:
    return value is None


class CloudEvent(BaseModel, Generic[P]):
    """One event: a CloudEvents 1.0 envelope around a typed payload.

    Build it with `codec.new_event`; `CloudEvent[UserTranscribed]` is only a static type,
    at run time every envelope is a plain `CloudEvent` whose `data` is the payload model.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    specversion: Literal["1.0"]
    """CloudEvents specification version."""
    id: str
    """Event id: any non-empty string, unique per producer (CloudEvents 1.0). Turnlog's
    own producers write a UUIDv7 in lower-case canonical form; other producers' ids
    (a UUIDv4, `evt-42`) are accepted as they are. Order comes from `sequence`, never
    from the id."""
    source: str = Field(pattern=SOURCE_PATTERN)
    """Who produced it: `/agents/{agent_name}/{worker_id}` for the gateway,
    `/streams/{app}/{processor}` for derived records; segments percent-encoded."""
    type: str = Field(pattern=TYPE_PATTERN)
    """Event type, `turnlog.{name}.v{major}`; names the payload model of `data`."""
    time: UtcDatetime
    """When the fact happened, RFC 3339 in UTC with microseconds."""
    subject: str = Field(min_length=1)
    """Name of the LiveKit room."""
    datacontenttype: Literal["application/json"] = DATA_CONTENT_TYPE
    """Media type of `data`."""
    sessionid: str = Field(min_length=1)
    """Extension: id of the AgentSession the event belongs to."""
    sequence: int = Field(ge=1, strict=True)
    """Extension: position of the event in its session: 1, 2, 3... with no gaps in
    `turnlog.events`; on a derived record, the sequence of the source event that produced
    it."""
    partitionkey: str = Field(min_length=1)
    """Extension: Kafka partitioning key; always equal to `sessionid`."""
    keyid: str | None = Field(default=None, min_length=1, exclude_if=_absent)
    """Extension: id of the data key that sealed the personal fields of `data` (Turnlog's
    keys are per session: the key id is the session id). Absent when nothing is sealed."""
    sealed: str | None = Field(default=None, min_length=1, exclude_if=_absent)
    """Extension: the sealed fields of `data`, space-separated dotted paths (`text`,
    `calls.0.arguments`); each holds a `tlsealed1:` token (see `schemas.sealing`) instead
    of its text. Absent when nothing is sealed."""
    redactions: int | None = Field(default=None, ge=0, exclude_if=_absent)
    """Extension: how many findings (card numbers, e-mail addresses, phone numbers...) the
    producer's redaction removed from `data` before publishing; absent when redaction is
    off for the producer."""
    data: Annotated[SerializeAsAny[P], WithJsonSchema({"type": "object"})]
    """The payload; its JSON Schema is the file named after `type`."""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        # A validator, not `min_length`: the checked-in JSON Schema had the UUIDv7 pattern,
        # and the export's compatibility check reads any added bound as a tightening.
        if not value:
            raise ValueError("must be a non-empty string (CloudEvents 1.0)")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.partitionkey != self.sessionid:
            raise ValueError(
                f"partitionkey {self.partitionkey!r} must equal sessionid {self.sessionid!r}"
            )
        payload_type = getattr(self.data, "TYPE", None)
        if payload_type != self.type:
            raise ValueError(f"type {self.type!r} does not match the payload's {payload_type!r}")
        return self


Envelope = CloudEvent
"""Alias: the envelope is the event."""


def agent_source(agent_name: str, worker_id: str) -> str:
    """The `source` of the gateway's events; an empty agent name (automatic dispatch)
    becomes `-`."""
    return f"/agents/{_segment(agent_name)}/{_segment(worker_id)}"


def stream_source(app: str, processor: str) -> str:
    """The `source` of a stream processor's derived records."""
    return f"/streams/{_segment(app)}/{_segment(processor)}"


def derived_event_id(key: str, time: datetime) -> str:
    """A deterministic UUIDv7 for a derived record: the millisecond timestamp of `time`,
    and random bits taken from a hash of `key`. A rebuild of the same record from the same
    source events gives the same id, so downstream deduplication keeps working."""
    millis = int(time.timestamp() * 1000) & ((1 << 48) - 1)
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=10).digest(), "big")
    rand_a = digest >> 68  # 12 bits
    rand_b = digest & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _segment(value: str) -> str:
    return quote(value, safe="") or "-"
