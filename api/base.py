"""The base of the API's request and response models: field docstrings become the
OpenAPI descriptions."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, ValidationError


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


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], raw: bytes) -> M:
    """`raw` JSON as `model`, validated in one pass by pydantic-core; failures are the
    same 422 as FastAPI's own body validation (locations under `body`)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError([
            {"loc": ("body", *d["loc"]), "msg": d["msg"], "type": d["type"]}
            for d in error.errors(include_url=False, include_input=False)
        ]) from None  # fmt: skip


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a route that reads its body with `parse_body`."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }
