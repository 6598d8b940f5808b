"""The base of the API's request and response models: field docstrings become the
OpenAPI descriptions."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict


class ApiModel(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


def _rfc3339_text(value: object) -> object:
    """Query times are RFC 3339 text: pydantic would also read `0.5` as a Unix time."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with its offset, e.g. 2025-03-01T10:00:00Z")
    return value


_RFC3339: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")

QueryTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
"""An aware date-time given as RFC 3339 text."""


class RequestModel(ApiModel):
    """A JSON request body: unknown fields refused, no coercion (`true` is not `1`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
