"""Helpers of the PostgreSQL projection's integration tests (no tests here): the recorded
partitioned log, extra schemas, and the rows of a schema as plain values."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tests.conftest import PgSchema, unique
from tests.fixtures.make_sessions import load
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.projections.postgres.tables import TABLES
from turnlog.projections.records import SourceRecord
from turnlog.schemas import EVENTS_TOPIC, CloudEvent

SESSIONS = load()
PARTITIONS = {"sess_tutor_happy": 0, "sess_support_handoff": 0, "sess_tutor_failed": 1}


def log(events: list[CloudEvent[Any]] | None = None) -> list[SourceRecord]:
    """The sessions as Kafka would hold them: by time, each session in its partition,
    offsets counted per partition."""
    if events is None:
        events = sorted((e for es in SESSIONS.values() for e in es),
                        key=lambda e: (e.time, e.sessionid, e.sequence))
    offsets: dict[int, int] = defaultdict(int)
    records = []
    for event in events:
        partition = PARTITIONS.get(event.sessionid, 2)
        records.append(SourceRecord(EVENTS_TOPIC, partition, offsets[partition], event))
        offsets[partition] += 1
    return records


def in_batches(records: list[SourceRecord], size: int) -> Iterator[list[SourceRecord]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


@contextmanager
def extra_schema(dsn: str) -> Iterator[PgSchema]:
    """One more migrated schema, dropped afterwards (a rebuild target)."""
    name = unique("test_")
    migrate_postgres(dsn, schema=name)
    try:
        yield PgSchema(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def rows(conn: psycopg.Connection[Any], schema: str, table: str) -> list[dict[str, Any]]:
    """Every row of a read model, ordered by key; arrays as tuples (as the model has them)."""
    spec = TABLES[table]
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in spec.all_columns),
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(c.name) for c in spec.key),
    )
    arrays = [c.name for c in spec.all_columns if c.type == "text[]"]
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query)
        result = cur.fetchall()
    for row in result:
        for name in arrays:
            row[name] = tuple(row[name])
    return result


def count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    ).fetchone()
    return int(str(row[0])) if row else 0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


LOG_BATCH = 25
"""Batch size of the tests that only need the sessions applied."""
