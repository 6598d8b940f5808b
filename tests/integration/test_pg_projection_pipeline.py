"""The writer's statements go in pipeline mode: a statement failing after the claim (the
last upsert of the batch) still leaves nothing, and the connection serves the next
batch."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PgSchema
from tests.integration.test_pg_projection_support import count, log
from turnlog.projections.postgres.errors import ProjectionWriteError
from turnlog.projections.postgres.tables import TABLES
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.schemas import EVENTS_TOPIC

pytestmark = pytest.mark.integration

LOG = log()


def _refuse_new_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> sql.Composed:
    drop = sql.SQL("ALTER TABLE {} DROP CONSTRAINT refuse_all").format(
        sql.Identifier(schema, table)
    )
    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
                 .format(sql.Identifier(schema, table)))  # fmt: skip
    return drop


def test_a_failing_last_upsert_leaves_nothing_and_the_connection_goes_on(
    pg_schema: PgSchema,
) -> None:
    last = list(TABLES)[-1]
    with pg_schema.connect() as conn:
        projection = PostgresProjection(conn, schema=pg_schema.name)
        drop = _refuse_new_rows(conn, pg_schema.name, last)

        with pytest.raises(ProjectionWriteError, match="refuse_all") as caught:
            projection.apply_batch(LOG)

        assert not caught.value.retryable
        assert isinstance(caught.value.__cause__, psycopg.errors.CheckViolation)
        for table in (*TABLES, "applied_events", "consumer_offsets"):
            assert count(conn, pg_schema.name, table) == 0, table
        conn.execute(drop)
        result = projection.apply_batch(LOG)
        assert (result.applied, result.skipped_duplicates) == (len(LOG), 0)
        assert result.rows[last] == count(conn, pg_schema.name, last) > 0
        assert projection.committed_offsets(EVENTS_TOPIC) == {0: 114, 1: 26}
