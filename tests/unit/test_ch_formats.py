"""The wire formats the two ClickHouse backends share."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from turnlog.projections.clickhouse.formats import converter, decode_result, encode_rows

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 2, 9, 30, 2, 300000, tzinfo=UTC)


def test_rows_are_encoded_column_by_column() -> None:
    paris = timezone(timedelta(hours=1))
    rows = [
        (1, "a", AT, None, ("x", "y"), {"k": 1.5}),
        (2, None, AT.astimezone(paris), AT, (), {}),
    ]
    assert json.loads(encode_rows(rows)) == [
        [1, 2],
        ["a", None],
        ["2026-03-02 09:30:02.300000+00:00", "2026-03-02 10:30:02.300000+01:00"],
        [None, "2026-03-02 09:30:02.300000+00:00"],
        [["x", "y"], []],
        [{"k": 1.5}, {}],
    ]


def test_an_empty_batch_is_an_empty_array() -> None:
    assert encode_rows([]) == b"[]"


def test_values_json_cannot_carry_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot encode object"):
        encode_rows([(object(),)])


def test_results_decode_to_the_values_clickhouse_connect_returns() -> None:
    text = "\n".join([
        json.dumps(["n", "t", "naive", "u", "d", "dec", "arr", "m", "tup", "nan", "s"]),
        json.dumps([
            "UInt64", "DateTime64(6, 'UTC')", "DateTime", "UUID", "Date", "Decimal(18, 2)",
            "Array(Nullable(Int32))", "Map(LowCardinality(String), Float64)",
            "Tuple(a UInt8, b String)", "Float64",
            "SimpleAggregateFunction(min, DateTime64(6, 'UTC'))",
        ]),
        json.dumps([
            7, "2026-03-02 09:30:02.300000", "2026-03-02 09:30:02",
            "0190f2a4-7a1e-7000-8000-000000000001", "2026-03-02", "1.25", [1, None],
            {"k": 2.5}, [1, "x"], "nan", "2026-03-02 09:30:02.300000",
        ]),
    ])  # fmt: skip
    result = decode_result(text)
    assert result.columns == ["n", "t", "naive", "u", "d", "dec", "arr", "m", "tup", "nan", "s"]
    n, t, naive, u, d, dec, arr, m, tup, nan, s = result.rows[0]
    assert (n, t, naive) == (7, AT, datetime(2026, 3, 2, 9, 30, 2))
    assert (u, d, dec) == (uuid.UUID("0190f2a4-7a1e-7000-8000-000000000001"), date(2026, 3, 2),
                           Decimal("1.25"))  # fmt: skip
    assert (arr, m, tup, s) == ([1, None], {"k": 2.5}, (1, "x"), AT)
    assert nan != nan


def test_an_empty_result_has_no_columns() -> None:
    assert decode_result("").columns == []


def test_unknown_types_pass_through() -> None:
    assert converter("Enum8('a' = 1, 'b' = 2)")("a") == "a"
    assert converter("IPv4")("127.0.0.1") == "127.0.0.1"
