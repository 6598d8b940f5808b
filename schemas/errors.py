"""The one exception hierarchy of `schemas`.

Every error names its problem in the message and carries a short machine-readable
`reason` (the stream processor copies it into the DLQ headers), plus the event type and id
when they were readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import ValidationError

_MAX_LISTED_ERRORS = 5
_MAX_INPUT_REPR = 60


class SchemaError(Exception):
    """Base of every error raised by `schemas`."""

    reason: ClassVar[str] = "schema_error"

    def __init__(
        self, message: str, *, event_type: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.event_type = event_type
        self.event_id = event_id


class MalformedEventError(SchemaError):
    """The body is not UTF-8, not JSON, not an object, or an envelope field is missing or
    invalid."""

    reason: ClassVar[str] = "malformed"


class UnknownEventTypeError(SchemaError):
    """The envelope's `type` is not in the catalog."""

    reason: ClassVar[str] = "unknown_type"


class InvalidPayloadError(SchemaError):
    """The `data` of a known type does not validate against its payload model."""

    reason: ClassVar[str] = "invalid_payload"

    def __init__(
        self,
        message: str,
        *,
        problems: Sequence[str] = (),
        event_type: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message, event_type=event_type, event_id=event_id)
        self.problems = tuple(problems)


class UnsupportedSpecVersionError(SchemaError):
    """The envelope's `specversion` is not the CloudEvents version this reader speaks."""

    reason: ClassVar[str] = "unsupported_specversion"


class EventTooLargeError(SchemaError):
    """The encoded event is larger than `MAX_EVENT_BYTES`."""

    reason: ClassVar[str] = "too_large"

    def __init__(
        self,
        *,
        size: int,
        limit: int,
        event_type: str | None = None,
        event_id: str | None = None,
    ) -> None:
        what = f"event {event_type}" if event_type else "event body"
        super().__init__(
            f"{what} is {size} bytes, over the limit of {limit} bytes",
            event_type=event_type,
            event_id=event_id,
        )
        self.size = size
        self.limit = limit


class IncompatibleSchemaError(SchemaError):
    """A model change would break readers of events already in the log."""

    reason: ClassVar[str] = "incompatible_schema"

    def __init__(self, message: str, *, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


def describe_validation_error(error: ValidationError, *, prefix: str = "") -> list[str]:
    """One line per pydantic error: the field path, the message and a short input repr.

    Inputs are truncated: a rejected body can be a megabyte of transcript.
    """
    lines: list[str] = []
    for detail in error.errors(include_url=False, include_context=False):
        path = format_location(detail["loc"], prefix=prefix) or "(root)"
        line = f"{path}: {detail['msg']}"
        if detail["type"] != "missing":
            shown = repr(detail["input"])
            if len(shown) > _MAX_INPUT_REPR:
                shown = shown[: _MAX_INPUT_REPR - 3] + "..."
            line += f" (got {shown})"
        lines.append(line)
    return lines


def summarize(lines: Sequence[str]) -> str:
    """Join the first few problems into one message line."""
    shown = "; ".join(lines[:_MAX_LISTED_ERRORS])
    hidden = len(lines) - _MAX_LISTED_ERRORS
    return f"{shown}; and {hidden} more" if hidden > 0 else shown


def format_location(loc: Sequence[int | str], *, prefix: str = "") -> str:
    """`("calls", 0, "name")` -> `calls[0].name`, with an optional leading `prefix.`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path
