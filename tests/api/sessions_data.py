"""Read-model data for the API tests, written by the real projections: the recorded
sessions (`tests/fixtures/sessions`), and copies of one under new ids and times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from tests.fixtures.make_sessions import load
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.clickhouse.writer import ClickHouseProjection
from turnlog.projections.postgres.writer import PostgresProjection
from turnlog.projections.records import SourceRecord
from turnlog.schemas import CloudEvent, derived_event_id
from turnlog.schemas.topics import EVENTS_TOPIC

RECORDED = load()
"""The recorded sessions by name: tutor_happy, tutor_failed, support_handoff."""


def records(events: list[CloudEvent[Any]], *, first_offset: int = 0) -> list[SourceRecord]:
    return [SourceRecord(EVENTS_TOPIC, 0, first_offset + i, e) for i, e in enumerate(events)]


def all_recorded() -> list[CloudEvent[Any]]:
    return sorted((e for es in RECORDED.values() for e in es), key=lambda e: e.time)


def copy_session(
    events: list[CloudEvent[Any]], *, session_id: str, start: datetime, room: str | None = None
) -> list[CloudEvent[Any]]:
    """The session's events under another id, shifted to begin at `start`."""
    shift = start - events[0].time
    return [
        e.model_copy(update={
            "sessionid": session_id, "partitionkey": session_id, "time": e.time + shift,
            "subject": room or e.subject,
            "id": derived_event_id(f"{session_id}/{e.sequence}", e.time + shift),
        })
        for e in events
    ]  # fmt: skip


def write_postgres(conn: psycopg.Connection[Any], schema: str,
                   events: list[CloudEvent[Any]], *, first_offset: int = 0) -> None:  # fmt: skip
    PostgresProjection(conn, schema=schema).apply_batch(records(events, first_offset=first_offset))


def write_clickhouse(store: AnalyticsStore, database: str, events: list[CloudEvent[Any]]) -> None:
    ClickHouseProjection(store, database=database).write_batch(records(events))
