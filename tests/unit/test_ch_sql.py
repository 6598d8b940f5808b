"""SQL text the stores build: names, setting literals, the session of a read-only query."""

from __future__ import annotations

import pytest

from turnlog.projections.clickhouse.sql import (
    error_code,
    quote_name,
    session_statements,
    setting_clause,
)

pytestmark = pytest.mark.unit


def test_a_read_only_session_is_read_only_last() -> None:
    settings = {"readonly": 1, "max_execution_time": 2.5, "limit": 11}
    assert session_statements(settings, "turnlog") == [
        "SET max_execution_time = 2.5",
        "SET limit = 11",
        "USE `turnlog`",
        "SET readonly = 1",
    ]
    assert session_statements({}, None) == []


def test_setting_values_are_literals_and_names_identifiers() -> None:
    clause = setting_clause({"insert_deduplication_token": "events@t/0:1-2 it's", "x": True})
    assert clause == "insert_deduplication_token = 'events@t/0:1-2 it\\'s', x = 1"
    with pytest.raises(ValueError, match="setting name 'x; DROP' must match"):
        setting_clause({"x; DROP": 1})
    with pytest.raises(ValueError, match="must match"):
        quote_name("a`b")


def test_error_codes_are_read_from_messages() -> None:
    assert error_code("Code: 164. DB::Exception: default: Cannot execute") == 164
    assert error_code("connection refused") is None
