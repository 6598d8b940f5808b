"""Backward compatibility between two JSON Schemas of one event type.

Compatible means a reader built from the new schema accepts every payload the old schema
accepted, so events already in the log keep decoding. Breaking: a removed field, a changed
type, a narrowed union or enum, an optional field made required, a new required field, a
tightened constraint or format, anywhere in the payload, nested models (`$defs`) included.
Allowed: a new optional field, a widened type (integer to number, adding null), a new enum
value or union member, looser constraints, changed descriptions, titles and defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

Schema = Mapping[str, Any]

_LOWER_BOUNDS: Final = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER_BOUNDS: Final = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")
_DEFS_PREFIX: Final = "#/$defs/"


def check_compatible(old_schema: Schema, new_schema: Schema) -> list[str]:
    """Every backward-incompatible difference from `old_schema` to `new_schema`, one
    human-readable line each, naming the field path; empty when compatible."""
    return _Comparison(old_schema, new_schema).compare(old_schema, new_schema, "")


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        # pairs of models being compared, to stop on recursive models
        self.in_progress: set[tuple[str, str]] = set()

    def compare(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_alts = _alternatives(old, self.old_root)
        new_alts = _alternatives(new, self.new_root)
        if any(_base(alt) == "any" for alt, _ in new_alts):
            return []
        objects = sum(1 for alt, _ in old_alts if _base(alt) == "object")
        problems: list[str] = []
        for old_alt, old_name in old_alts:
            label = f"{path}<{old_name}>" if old_name and objects > 1 else path
            found = self._closest(old_alt, old_name, new_alts, label)
            if found is None:
                problems.append(
                    _type_change(
                        path,
                        old_alts=old_alts,
                        new_alts=new_alts,
                        old_alt=old_alt,
                        old_name=old_name,
                    )
                )
            else:
                problems.extend(found)
        return problems

    def _closest(
        self,
        old_alt: Schema,
        old_name: str | None,
        new_alts: list[tuple[Schema, str | None]],
        path: str,
    ) -> list[str] | None:
        """The problems of `old_alt` against the closest new member (the model of the same
        name on a tie); None when no new member can stand in for it."""
        candidates = [(alt, name) for alt, name in new_alts if _widens(_base(old_alt), _base(alt))]
        candidates.sort(key=lambda item: item[1] != old_name)
        best: list[str] | None = None
        for new_alt, new_name in candidates:
            found = self._compare_one(old_alt, old_name, new_alt, new_name, path)
            if best is None or len(found) < len(best):
                best = found
            if not found:
                return []
        if best and old_name and all(name != old_name for _, name in candidates):
            return None  # no model of that name any more: the member is gone, not changed
        return best

    def _compare_one(
        self, old: Schema, old_name: str | None, new: Schema, new_name: str | None, path: str
    ) -> list[str]:
        pair = (old_name or "", new_name or "")
        if old_name and new_name:
            if pair in self.in_progress:
                return []
            self.in_progress.add(pair)
        try:
            problems = _compare_values(old, new, path)
            kind = _base(old)
            if kind == "object":
                problems += self._compare_object(old, new, path)
            elif kind == "array":
                problems += self._compare_array(old, new, path)
            return problems
        finally:
            self.in_progress.discard(pair)

    def _compare_object(self, old: Schema, new: Schema, path: str) -> list[str]:
        problems: list[str] = []
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        for name in old_props:
            if name not in new_props:
                problems.append(f"{_join(path, name)}: field removed")
        for name in sorted(new_required - old_required):
            what = "optional field made required" if name in old_props else "new required field"
            problems.append(f"{_join(path, name)}: {what}")
        for name, old_field in old_props.items():
            if name in new_props:
                problems += self.compare(old_field, new_props[name], _join(path, name))
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            problems.append(f"{_at(path)}: no longer accepts unknown fields")
        elif isinstance(new_extra, Mapping):
            old_values = old_extra if isinstance(old_extra, Mapping) else {}
            problems += self.compare(old_values, new_extra, f"{path}{{}}")
        return problems

    def _compare_array(self, old: Schema, new: Schema, path: str) -> list[str]:
        problems = self.compare(old.get("items", {}), new.get("items", {}), f"{path}[]")
        old_prefix = old.get("prefixItems", [])
        new_prefix = new.get("prefixItems", [])
        for index, (old_item, new_item) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            problems += self.compare(old_item, new_item, f"{path}[{index}]")
        return problems


def _compare_values(old: Schema, new: Schema, path: str) -> list[str]:
    """Literal values, format, pattern and bounds of two alternatives of the same kind."""
    problems: list[str] = []
    old_values = _literal_values(old)
    new_values = _literal_values(new)
    if new_values is not None:
        if old_values is None:
            problems.append(f"{_at(path)}: now restricted to {', '.join(sorted(new_values))}")
        elif removed := old_values - new_values:
            problems.append(f"{_at(path)}: no longer accepts {', '.join(sorted(removed))}")
    for key in ("format", "pattern"):
        if key in new and new[key] != old.get(key):
            problems.append(f"{_at(path)}: {key} changed from {old.get(key)!r} to {new[key]!r}")
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"{_at(path)}: {key} tightened from {old.get(key)} to {new[key]}")
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"{_at(path)}: {key} tightened from {old.get(key)} to {new[key]}")
    return problems


def _alternatives(node: Schema, root: Schema) -> list[tuple[Schema, str | None]]:
    """The union members of `node`, refs resolved, nested unions flattened."""
    name: str | None = None
    seen: set[str] = set()
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith(_DEFS_PREFIX) or ref in seen:
            raise ValueError(f"unsupported or cyclic $ref {ref!r}")
        seen.add(ref)
        name = ref.removeprefix(_DEFS_PREFIX)
        node = root.get("$defs", {})[name]
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [alt for member in node[key] for alt in _alternatives(member, root)]
    if isinstance(node.get("type"), list):
        return [({**node, "type": kind}, name) for kind in node["type"]]
    return [(node, name)]


def _base(node: Schema) -> str:
    kind = node.get("type")
    if isinstance(kind, str):
        return kind
    values = node["enum"] if "enum" in node else [node["const"]] if "const" in node else None
    if values:
        kinds = {_json_kind(value) for value in values}
        return kinds.pop() if len(kinds) == 1 else "any"
    if "properties" in node:
        return "object"
    return "any"


def _widens(old_kind: str, new_kind: str) -> bool:
    return old_kind == new_kind or (old_kind, new_kind) == ("integer", "number")


def _literal_values(node: Schema) -> set[str] | None:
    if "const" in node:
        return {json.dumps(node["const"])}
    if "enum" in node:
        return {json.dumps(value) for value in node["enum"]}
    return None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _describe(node: Schema, name: str | None) -> str:
    if name:
        return name
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return " | ".join(json.dumps(value) for value in node["enum"])
    kind = _base(node)
    return f"{kind} ({node['format']})" if "format" in node else kind


def _type_change(
    path: str,
    *,
    old_alts: list[tuple[Schema, str | None]],
    new_alts: list[tuple[Schema, str | None]],
    old_alt: Schema,
    old_name: str | None,
) -> str:
    new_text = " | ".join(_describe(alt, name) for alt, name in new_alts)
    if len(old_alts) == 1:
        return f"{_at(path)}: type changed from {_describe(old_alt, old_name)} to {new_text}"
    old_text = " | ".join(_describe(alt, name) for alt, name in old_alts)
    return (
        f"{_at(path)}: no longer accepts {_describe(old_alt, old_name)}"
        f" (was {old_text}, now {new_text})"
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _at(path: str) -> str:
    return path or "(root)"
