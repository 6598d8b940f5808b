"""Every ClickHouse panel of the Grafana dashboards runs on the real analytics DDL.

Grafana's macros are replaced as the ClickHouse data source expands them, and the
dashboards' `turnlog.` database by this test's own; a table or column the DDL lacks fails
the query.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.test_dashboards import panels
from turnlog.projections.clickhouse.store import AnalyticsStore

pytestmark = pytest.mark.integration

_TIME_FILTER = re.compile(r"\$__timeFilter\((\w+)\)")
_TABLE = re.compile(r"((?:FROM|JOIN)\s+)turnlog\.")


def runnable(sql: str, database: str) -> str:
    sql = _TIME_FILTER.sub(r"\1 >= now() - INTERVAL 6 HOUR AND \1 <= now()", sql)
    return _TABLE.sub(lambda m: f"{m.group(1)}`{database}`.", sql)


def test_every_clickhouse_panel_runs_on_the_analytics_tables(
    analytics_store: AnalyticsStore, ch_database: str
) -> None:
    clickhouse_panels = panels("grafana-clickhouse-datasource")
    assert len(clickhouse_panels) >= 5
    tables = {row[0] for row in analytics_store.query(
        "SELECT name FROM system.tables WHERE database = {db:String}",
        parameters={"db": ch_database},
    )}  # fmt: skip
    for title, panel in clickhouse_panels:
        for target in panel["targets"]:
            sql = target["rawSql"]
            assert "$__" not in runnable(sql, ch_database), title
            for _, table in re.findall(_TABLE.pattern + r"(\w+)", sql):
                assert table in tables, f"{title}: no table {table}"
            analytics_store.query(runnable(sql, ch_database))  # raises on a missing column
