"""SQL text the stores build: quoted names, setting literals, session statements."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

_ERROR_CODE: Final = re.compile(r"Code: (\d+)")
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def error_code(message: str) -> int | None:
    """The ClickHouse error code in an exception message, if it names one."""
    match = _ERROR_CODE.search(message)
    return int(match.group(1)) if match else None


def quote_name(name: str) -> str:
    """A database or table name as a quoted identifier; only plain names are accepted."""
    if not _NAME.match(name):
        raise ValueError(f"ClickHouse name {name!r} must match {_NAME.pattern}")
    return f"`{name}`"


def setting_clause(settings: Mapping[str, Any]) -> str:
    """``name = value, ...`` for a ``SETTINGS`` clause."""
    return ", ".join(f"{setting_name(k)} = {setting_literal(v)}" for k, v in settings.items())


def session_statements(settings: Mapping[str, Any], database: str | None) -> list[str]:
    """SET statements for a fresh chDB session: ``readonly`` last, since a read-only
    session may change no setting (nor its default database) after it."""
    statements = [
        f"SET {setting_name(k)} = {setting_literal(v)}"
        for k, v in settings.items()
        if k != "readonly"
    ]
    if database is not None:
        statements.append(f"USE {quote_name(database)}")
    if "readonly" in settings:
        statements.append(f"SET readonly = {setting_literal(settings['readonly'])}")
    return statements


def setting_name(name: str) -> str:
    """``name``, if it is a plain identifier (settings are spelled into SQL)."""
    if not _NAME.match(name):
        raise ValueError(f"ClickHouse setting name {name!r} must match {_NAME.pattern}")
    return name


def setting_literal(value: Any) -> str:
    """A setting value as an SQL literal: numbers bare, anything else a quoted string."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"
