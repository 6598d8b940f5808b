"""How the ClickHouse projection sorts a failed insert: a refused value is isolated, the
store's other failures are retried, anything else is the event's."""

from __future__ import annotations

import pytest

from turnlog.projections.clickhouse.store import (
    AnalyticsStoreError,
    QueryFailedError,
    StoreLockedError,
)
from turnlog.streams.clickhouse_projector import ClickHouseProjector
from turnlog.streams.isolate import Verdict
from turnlog.streams.records import STAGE_CLICKHOUSE, RawRecord
from turnlog.streams.sinks import classify_clickhouse as classify
from turnlog.streams.sinks import letter_for

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("code", [33, 41, 117, 376])
def test_a_refused_value_is_isolated(code: int) -> None:
    assert classify(QueryFailedError("refused", code=code)) is Verdict.ISOLATE


@pytest.mark.parametrize(
    "error",
    [QueryFailedError("timeout", code=159), QueryFailedError("no answer"),
     AnalyticsStoreError("cannot reach"), StoreLockedError("held"), ConnectionResetError()],
)  # fmt: skip
def test_the_stores_other_failures_are_retried(error: BaseException) -> None:
    assert classify(error) is Verdict.RETRY


def test_an_error_that_is_not_the_stores_is_the_events() -> None:
    assert classify(ValueError("bad event")) is Verdict.ISOLATE


def test_a_dead_letter_names_the_stage_and_the_error() -> None:
    record = RawRecord("turnlog.events", 2, 40, b"s-1", b"{}")
    letter = letter_for(record, QueryFailedError("Code: 41. Cannot read DateTime", code=41),
                        STAGE_CLICKHOUSE)
    assert (letter.record, letter.stage, letter.reason) == (
        record,
        "clickhouse",
        "projection_failed",
    )
    assert (letter.exception, letter.message) == (
        "QueryFailedError",
        "Code: 41. Cannot read DateTime",
    )


def test_the_projector_names_itself_and_leaves_decode_failures_to_another() -> None:
    projector = ClickHouseProjector(
        url="http://u:secret@127.0.0.1:8123",
        database="turnlog",
        group="turnlog-clickhouse",
        dlq_topic="turnlog.events.dlq",
    )
    assert (projector.name, projector.group, projector.dead_letters_decode) == (
        "clickhouse", "turnlog-clickhouse", False,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="not started"):
        projector.store  # noqa: B018
