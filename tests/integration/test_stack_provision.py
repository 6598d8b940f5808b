"""`turnlog provision` (docker-compose.yml's init service) on stores it did not start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Topics, unique

pytestmark = pytest.mark.integration


def test_provision_migrates_the_stores_its_variables_name(
    topics: Topics, postgres_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    schema = unique("test_")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {
        **os.environ,
        "TURNLOG_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TURNLOG_TOPIC_PREFIX": topics.prefix,
        "TURNLOG_POSTGRES_DSN": postgres_dsn,
        "TURNLOG_POSTGRES_SCHEMA": schema,
        "TURNLOG_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
    }
    argv = [sys.executable, "-m", "turnlog.infra.cli", "provision"]
    try:
        first = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        again = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        with psycopg.connect(postgres_dsn) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )}  # fmt: skip
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    assert first.returncode == 0, first.stderr
    assert "topics     up to date" in first.stdout  # the fixture made them already
    assert "clickhouse database turnlog migrated" in first.stdout
    assert {"sessions", "messages", "api_keys"} <= tables
    assert again.returncode == 0, again.stderr
    assert f"postgres   0 migration(s) applied to {schema}" in again.stdout


def test_provision_names_a_missing_clickhouse_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TURNLOG_CLICKHOUSE_URL"}
    result = subprocess.run([sys.executable, "-m", "turnlog.infra.cli", "provision"], env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "TURNLOG_CLICKHOUSE_URL" in result.stderr
