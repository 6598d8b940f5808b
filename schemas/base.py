"""Base classes and shared field types of every model in the catalog.

Unknown fields: models are built with `extra="forbid"`, so a producer that misspells a
field fails at once (and mypy, through the pydantic plugin, sees no `**kwargs`). Readers
decode with `extra="ignore"` (see `codec.decode`), so a payload written by a newer minor
that added an optional field still decodes here; the unknown field is dropped. The exported
JSON Schemas leave `additionalProperties` open for the same reason.

Fields copied from LiveKit carry no range constraints (a confidence of 1.2 is still a
fact): a constraint would make the gateway drop a real event on the voice path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
)

TYPE_PATTERN: Final = r"^turnlog(\.[a-z][a-z0-9_]*)+\.v[1-9][0-9]*$"
"""`turnlog.{name}.v{major}`, e.g. `turnlog.user.transcribed.v1`."""

_TYPE_RE: Final = re.compile(TYPE_PATTERN)


def _reject_numbers(value: Any) -> Any:
    # pydantic would read a number as a unix timestamp; the wire format is RFC 3339 only
    if isinstance(value, int | float):
        raise ValueError("expected an RFC 3339 timestamp string, got a number")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _rfc3339(value: datetime) -> str:
    naive_utc = value.astimezone(UTC).replace(tzinfo=None)
    return naive_utc.isoformat(timespec="microseconds") + "Z"


UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_reject_numbers),
    AfterValidator(_to_utc),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
]
"""An aware datetime, normalized to UTC; naive values are rejected. On the wire:
RFC 3339 with microseconds and a `Z`, e.g. `2025-01-31T09:15:02.123456Z`."""


class Record(BaseModel):
    """Base of every model in the catalog, payloads and their nested parts alike."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )


class EventPayload(Record):
    """The `data` of one event type. Subclasses set `TYPE` to their type string."""

    TYPE: ClassVar[str]


class TurnScoped(EventPayload):
    """A payload that can belong to a conversational turn."""

    turn_id: str | None = None
    """Opaque id of the conversational turn this fact belongs to, assigned by the gateway
    and unique within the session; join a turn's facts on (sessionid, turn_id). None when
    the fact happened outside any turn."""


class ModelInfo(Record):
    """Which provider and model produced something, as LiveKit reports it."""

    provider: str | None = None
    """Provider name, e.g. `openai`, `deepgram`."""
    model: str | None = None
    """Model name, e.g. `gpt-4o-mini`, `nova-3`."""


def is_valid_type(event_type: str) -> bool:
    """Whether `event_type` has the `turnlog.{name}.v{major}` shape."""
    return _TYPE_RE.fullmatch(event_type) is not None
