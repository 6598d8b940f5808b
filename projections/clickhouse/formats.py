"""The wire formats both backends share: rows in, result sets out.

Inserts travel as ``JSONCompactColumns`` bytes built here, to chDB and to a server alike,
so the two backends receive the same payload. chDB hands results back as
``JSONCompactEachRowWithNamesAndTypes`` text; ``decode_result`` turns it into the Python
values clickhouse-connect returns for the same types (aware datetimes for columns with a
time zone, UUID objects, Decimals, lists, tuples, dicts).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

INSERT_FORMAT: Final = "JSONCompactColumns"
INSERT_SETTINGS: Final = {"date_time_input_format": "best_effort"}
"""Settings every insert of ``encode_rows`` data needs."""
RESULT_FORMAT: Final = "JSONCompactEachRowWithNamesAndTypes"

CHDB_OUTPUT_SETTINGS: Final = {
    "output_format_json_quote_denormals": 1,  # nan and inf as strings, not null
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_decimals": 1,  # exact Decimals, not doubles
    "output_format_json_validate_utf8": 1,  # aggregate states are bytes, not UTF-8
}


@dataclass(frozen=True, slots=True)
class ResultSet:
    """Column names, ClickHouse type names, and the rows of one query."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def encode_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """``rows`` as ``JSONCompactColumns``: one JSON array per column, all in one array.

    Column-wise, the whole batch is one ``json.dumps`` call. Datetimes are written as
    ISO 8601 with their offset and read with ``INSERT_SETTINGS`` (best effort), so an
    aware time lands on the right instant whatever its zone.
    """
    if not rows:
        return b"[]"
    columns = [_column_values(column) for column in zip(*rows, strict=True)]
    return _ENCODER.encode(columns).encode()


def _column_values(column: tuple[Any, ...]) -> Sequence[Any]:
    sample = next((v for v in column if v is not None), None)
    if isinstance(sample, datetime):
        return [None if v is None else v.isoformat(" ") for v in column]
    if isinstance(sample, date | uuid.UUID | Decimal):
        return [None if v is None else str(v) for v in column]
    return column


def _encode_default(value: Any) -> Any:
    if isinstance(value, datetime | date | uuid.UUID | Decimal):
        return value.isoformat(" ") if isinstance(value, datetime) else str(value)
    if isinstance(value, frozenset | set):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} for ClickHouse: {value!r}")


_ENCODER: Final = json.JSONEncoder(default=_encode_default, ensure_ascii=False, allow_nan=False)


def decode_result(text: str) -> ResultSet:
    """Parse ``JSONCompactEachRowWithNamesAndTypes`` output."""
    # one row per "\n" only: str.splitlines would also cut at U+2028, \x85 and the like,
    # which ClickHouse leaves unescaped inside strings
    lines = text.split("\n")
    if len(lines) < 2:
        return ResultSet([], [], [])
    columns: list[str] = json.loads(lines[0])
    types: list[str] = json.loads(lines[1])
    converters = [converter(t) for t in types]
    rows = []
    for line in lines[2:]:
        if line:
            values = json.loads(line)
            rows.append(tuple(f(v) for f, v in zip(converters, values, strict=True)))
    return ResultSet(columns, types, rows)


Converter = Callable[[Any], Any]


def converter(type_name: str) -> Converter:
    """A function from the JSON value of a ClickHouse type to its Python value."""
    name, args = _split_type(type_name)
    if name == "SimpleAggregateFunction":
        return converter(args[-1])
    if name in ("Nullable", "LowCardinality"):
        inner = converter(args[0])
        return lambda v: None if v is None else inner(v)
    if name == "Array":
        item = converter(args[0])
        return lambda v: [item(x) for x in v]
    if name == "Tuple":
        items = [converter(_strip_element_name(a)) for a in args]
        return lambda v: tuple(f(x) for f, x in zip(items, v, strict=True))
    if name == "Map":
        key, val = converter(args[0]), converter(args[1])
        return lambda v: {key(k): val(x) for k, x in v.items()}
    if name in ("DateTime", "DateTime64"):
        return _datetime_converter(aware=any(a.startswith("'") for a in args))
    if name.startswith("Decimal"):
        return lambda v: Decimal(str(v))
    return _SCALARS.get(name, _identity)


def _datetime_converter(*, aware: bool) -> Converter:
    # Columns with a zone come back as aware datetimes, as clickhouse-connect returns them;
    # every zone we declare is UTC, so the text is UTC wall time.
    def convert(value: Any) -> datetime:
        parsed = datetime.fromisoformat(str(value))
        return parsed.replace(tzinfo=UTC) if aware else parsed

    return convert


def _identity(value: Any) -> Any:
    return value


def _to_float(value: Any) -> float:
    return float(value)


_SCALARS: Final[dict[str, Converter]] = {
    **{f"{p}Int{b}": int for p in ("", "U") for b in (8, 16, 32, 64, 128, 256)},
    "Float32": _to_float,
    "Float64": _to_float,
    "BFloat16": _to_float,
    "Bool": bool,
    "String": _identity,
    "FixedString": _identity,
    "UUID": uuid.UUID,
    "Date": date.fromisoformat,
    "Date32": date.fromisoformat,
}


def _split_type(type_name: str) -> tuple[str, list[str]]:
    """``Map(String, Array(UInt8))`` -> ``("Map", ["String", "Array(UInt8)"])``."""
    type_name = type_name.strip()
    open_at = type_name.find("(")
    if open_at < 0 or not type_name.endswith(")"):
        return type_name, []
    args: list[str] = []
    depth, start, quoted = 0, open_at + 1, False
    for i, char in enumerate(type_name[open_at + 1 : -1], start=open_at + 1):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and char == "," and depth == 0:
            args.append(type_name[start:i].strip())
            start = i + 1
    args.append(type_name[start:-1].strip())
    return type_name[:open_at], args


def _strip_element_name(arg: str) -> str:
    """A named tuple element ``name Type`` -> ``Type``."""
    head, _, rest = arg.partition(" ")
    if rest and "(" not in head and not head[:1].isupper():
        return rest
    return arg
