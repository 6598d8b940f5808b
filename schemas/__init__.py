"""Turnlog's event catalog: the CloudEvents envelope, one frozen payload model per event
type, the codec, Kafka topic specs, and the JSON Schema export with its compatibility check.

The single source of truth for every producer and consumer. Imports nothing from Kafka,
databases or LiveKit.
"""

from __future__ import annotations

from turnlog.schemas.base import EventPayload, ModelInfo, Record, TurnScoped, UtcDatetime
from turnlog.schemas.catalog import (
    CATALOG,
    EVENT_TYPES,
    Catalog,
    Upcaster,
    lookup,
    register_upcaster,
)
from turnlog.schemas.codec import MAX_EVENT_BYTES, decode, encode, new_event, trusted_event
from turnlog.schemas.compat import check_compatible
from turnlog.schemas.envelope import (
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    Envelope,
    agent_source,
    derived_event_id,
    stream_source,
)
from turnlog.schemas.errors import (
    EventTooLargeError,
    IncompatibleSchemaError,
    InvalidPayloadError,
    MalformedEventError,
    SchemaError,
    UnknownEventTypeError,
    UnsupportedSpecVersionError,
)
from turnlog.schemas.events import *  # noqa: F403  (the payload models, listed in events.__all__)
from turnlog.schemas.events import __all__ as _payload_names
from turnlog.schemas.topics import (
    DLQ_TOPIC,
    ERASURES_TOPIC,
    EVENTS_TOPIC,
    KEYS_TOPIC,
    SESSIONS_TOPIC,
    TURNS_TOPIC,
    TopicSpec,
    topic_specs,
)

__all__ = [
    "CATALOG",
    "DLQ_TOPIC",
    "ERASURES_TOPIC",
    "EVENTS_TOPIC",
    "KEYS_TOPIC",
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "SESSIONS_TOPIC",
    "STRUCTURED_CONTENT_TYPE",
    "TURNS_TOPIC",
    "Catalog",
    "CloudEvent",
    "Envelope",
    "EventPayload",
    "EventTooLargeError",
    "IncompatibleSchemaError",
    "InvalidPayloadError",
    "MalformedEventError",
    "ModelInfo",
    "Record",
    "SchemaError",
    "TopicSpec",
    "TurnScoped",
    "UnknownEventTypeError",
    "UnsupportedSpecVersionError",
    "Upcaster",
    "UtcDatetime",
    "agent_source",
    "check_compatible",
    "decode",
    "derived_event_id",
    "encode",
    "lookup",
    "new_event",
    "trusted_event",
    "register_upcaster",
    "stream_source",
    "topic_specs",
    *_payload_names,
]
