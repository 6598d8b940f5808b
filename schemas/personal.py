"""Which payload fields carry personal data, and one walk that rewrites them.

A field is personal when its model declares it with `Personal` (a `str`) or
`PersonalTuple` (a tuple of `str`); the JSON Schema export marks it `x-turnlog-personal`.
The gateway seals these fields (see `sealing`) and may redact them first; every other
field is stored in clear. The one thing to know: the walk never validates, it copies the
frozen models with their personal strings replaced, so a rewrite cannot drop an event.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeAlias, TypeVar

from pydantic import Field

from turnlog.schemas.base import Record

PERSONAL_KEYWORD: Final = "x-turnlog-personal"
"""JSON Schema keyword on a personal field: `true`."""

Personal: TypeAlias = Annotated[str, Field(json_schema_extra={PERSONAL_KEYWORD: True})]
"""A string that carries personal data: sealed before it is published."""
OptionalPersonal: TypeAlias = Annotated[
    str | None, Field(json_schema_extra={PERSONAL_KEYWORD: True})
]
"""An optional string that carries personal data."""
PersonalTuple: TypeAlias = Annotated[
    tuple[str, ...], Field(json_schema_extra={PERSONAL_KEYWORD: True})
]
"""A tuple of strings that carry personal data: each item is sealed."""

R = TypeVar("R", bound=Record)
Rewrite = Callable[[str], str]
"""Takes a personal string, returns what replaces it."""

_PERSONAL: Final = "personal"
_NESTED: Final = "nested"


def is_personal_field(model: type[Record], name: str) -> bool:
    """Whether field `name` of `model` is declared personal."""
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get(PERSONAL_KEYWORD) is True


@functools.cache
def _plan(model: type[Record]) -> tuple[tuple[str, str], ...]:
    """(field, personal|nested) for the fields a walk must visit, in declaration order."""
    steps: list[tuple[str, str]] = []
    for name, info in model.model_fields.items():
        if is_personal_field(model, name):
            steps.append((name, _PERSONAL))
        elif _holds_records(info.annotation):
            steps.append((name, _NESTED))
    return tuple(steps)


def _holds_records(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return bool(_plan(annotation))
    origin = typing.get_origin(annotation)
    if origin is None:
        return False
    if origin is Annotated:
        return _holds_records(typing.get_args(annotation)[0])
    if origin in (tuple, list, typing.Union, types.UnionType):
        return any(_holds_records(arg) for arg in typing.get_args(annotation))
    return False


def personal_paths(model: type[Record]) -> list[str]:
    """The personal fields of `model` as dotted paths, `[]` marking a tuple's items and
    `<Model>` a union member, e.g. `calls[].arguments`, `update<ToolCallEndedUpdate>.message`."""
    paths: list[str] = []
    for name, kind in _plan(model):
        if kind == _PERSONAL:
            annotation = model.model_fields[name].annotation
            paths.append(name + ("[]" if typing.get_origin(annotation) is tuple else ""))
            continue
        for suffix in _nested_paths(model.model_fields[name].annotation):
            paths.append(name + suffix)
    return paths


def _nested_paths(annotation: Any) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return ["." + path for path in personal_paths(annotation)]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return _nested_paths(args[0])
    if origin in (tuple, list):
        return ["[]" + path for arg in args if arg is not Ellipsis for path in _nested_paths(arg)]
    members = [arg for arg in args if isinstance(arg, type) and issubclass(arg, Record)]
    if len(members) <= 1:
        return [path for arg in args for path in _nested_paths(arg)]
    return [f"<{member.__name__}>{path}" for member in members for path in _nested_paths(member)]


def has_personal_fields(model: type[Record]) -> bool:
    """Whether a walk of `model` can find anything to rewrite."""
    return bool(_plan(model))


def rewrite_personal(record: R, rewrite: Rewrite) -> tuple[R, list[str]]:
    """`record` with every non-empty personal string replaced by `rewrite(value)`, and the
    concrete paths rewritten (`text`, `calls.0.arguments`, `error.message`). The same
    object when nothing was rewritten."""
    paths: list[str] = []
    return _rewrite(record, rewrite, "", paths), paths


def _rewrite(record: R, rewrite: Rewrite, prefix: str, paths: list[str]) -> R:
    update: dict[str, Any] = {}
    for name, kind in _plan(type(record)):
        value = getattr(record, name)
        if value is None:
            continue
        path = prefix + name
        if kind == _PERSONAL:
            if isinstance(value, str):
                if value:
                    update[name] = rewrite(value)
                    paths.append(path)
            else:
                items = tuple(rewrite(item) if item else item for item in value)
                if items != value:
                    update[name] = items
                    paths.extend(f"{path}.{i}" for i, item in enumerate(value) if item)
        elif isinstance(value, Record):
            new = _rewrite(value, rewrite, path + ".", paths)
            if new is not value:
                update[name] = new
        elif isinstance(value, tuple):
            items = tuple(
                _rewrite(item, rewrite, f"{path}.{i}.", paths) if isinstance(item, Record) else item
                for i, item in enumerate(value)
            )
            if any(new is not old for new, old in zip(items, value, strict=True)):
                update[name] = items
    return record.model_copy(update=update) if update else record
