"""The two projections as `isolate.Sink`s: how each one's failures are classified.

PostgreSQL (`projections.postgres`): an `UnhandledEventError` names its event (pinpointed,
no bisection); a write error is retried when PostgreSQL says so (`retryable`: the
connection, a deadlock); a refused value (`DataError`, `IntegrityError`) is the data's
fault and isolated; anything else the database says (a missing table, no permission) is
the deployment's fault: FATAL, so a missing migration never dead-letters the whole log.
An exception that is not the database's comes from the pure event-to-rows code and is
the event's.

ClickHouse (`projections.clickhouse`): its README says to retry a failed batch unchanged,
so every store error is retried, except the codes by which ClickHouse refuses a value,
which are isolated. An exception that is not the store's is the event's (pure rows code).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import psycopg

from turnlog.projections.clickhouse.store import AnalyticsStoreError, QueryFailedError
from turnlog.projections.postgres.errors import (
    PostgresProjectionError,
    ProjectionWriteError,
    UnhandledEventError,
)
from turnlog.projections.postgres.writer import BatchResult
from turnlog.projections.records import SourceRecord
from turnlog.streams.isolate import Sink, Verdict
from turnlog.streams.records import STAGE_CLICKHOUSE, STAGE_POSTGRES, DeadLetter, RawRecord

R = TypeVar("R")

CLICKHOUSE_DATA_ERRORS: Final = frozenset({
    6,    # CANNOT_PARSE_TEXT
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,   # CANNOT_READ_ALL_DATA (a value that is not a whole JSON object)
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    376,  # CANNOT_PARSE_UUID
})
"""ClickHouse error codes that blame a value of the insert, not the server."""


def classify_postgres(error: BaseException) -> Verdict:
    if isinstance(error, UnhandledEventError):
        return Verdict.ISOLATE
    if isinstance(error, ProjectionWriteError):
        if error.retryable:
            return Verdict.RETRY
        if isinstance(error.__cause__, psycopg.DataError | psycopg.IntegrityError):
            return Verdict.ISOLATE
        return Verdict.FATAL
    if isinstance(error, PostgresProjectionError):
        return Verdict.FATAL
    if isinstance(error, psycopg.OperationalError):
        return Verdict.RETRY
    if isinstance(error, psycopg.Error):
        return Verdict.FATAL
    return Verdict.ISOLATE


def pinpoint_postgres(error: BaseException, chunk: Sequence[SourceRecord]) -> list[int]:
    if isinstance(error, UnhandledEventError):
        return [i for i, record in enumerate(chunk) if record.event.id == error.event_id]
    return []


def classify_clickhouse(error: BaseException) -> Verdict:
    if isinstance(error, QueryFailedError) and error.code in CLICKHOUSE_DATA_ERRORS:
        return Verdict.ISOLATE
    if isinstance(error, AnalyticsStoreError | OSError):
        return Verdict.RETRY
    return Verdict.ISOLATE


def postgres_sink(
    apply: Callable[[list[SourceRecord]], BatchResult],
) -> Sink[SourceRecord, BatchResult]:
    return Sink(STAGE_POSTGRES, apply, classify_postgres, pinpoint_postgres)


def clickhouse_sink(apply: Callable[[list[SourceRecord]], R]) -> Sink[SourceRecord, R]:
    return Sink(STAGE_CLICKHOUSE, apply, classify_clickhouse)


def letter_for(record: RawRecord, error: BaseException, stage: str) -> DeadLetter:
    """The dead letter of a record a projection refused at `stage`."""
    reason = "unhandled_type" if isinstance(error, UnhandledEventError) else "projection_failed"
    return DeadLetter(record, reason, type(error).__name__, str(error), stage)
