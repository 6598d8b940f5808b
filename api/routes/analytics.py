"""Analytics from ClickHouse: latency percentiles, usage, activity per minute (scope
`read`), and analysts' read-only SQL (scope `admin`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from turnlog.api.base import ApiModel, QueryTime, RequestModel
from turnlog.api.deps import AdminCaller, ReadCaller
from turnlog.api.errors import ApiError, ErrorBody, InvalidRequestError, responses
from turnlog.api.settings import ApiSettings
from turnlog.projections.clickhouse import queries as ch_queries
from turnlog.projections.clickhouse.analyst import (
    AnalystQueryError,
    QuerySyntaxError,
    QueryTimeoutError,
    ReadOnlyViolationError,
)

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

DEFAULT_WINDOW: Final = timedelta(hours=1)
MAX_WINDOW: Final = timedelta(days=31)
MAX_OVERVIEW_WINDOW: Final = timedelta(days=7)

Start = Annotated[
    QueryTime | None,
    Query(description="Window start (inclusive); default: `end` minus one hour."),
]
End = Annotated[QueryTime | None, Query(description="Window end (exclusive); default: now.")]


def window(
    start: datetime | None, end: datetime | None, *, longest: timedelta
) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise InvalidRequestError("start must be before end", field="start")
    if end - start > longest:
        raise InvalidRequestError(f"the window may span at most {longest}", field="start")
    return start, end


class LatencyStatOut(ApiModel):
    """One stage for one provider and model, in seconds."""

    stage: str = Field(examples=["llm"])
    """`eou`, `stt`, `llm`, `tts` or `e2e`."""
    provider: str = Field(examples=["openai"])
    model: str = Field(examples=["gpt-4o-mini"])
    samples: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


class LatencyOut(ApiModel):
    start: datetime
    end: datetime
    stats: list[LatencyStatOut]


class UsageStatOut(ApiModel):
    kind: str = Field(examples=["llm"])
    provider: str
    model: str
    requests: int
    cancelled: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    characters: int
    audio_seconds: float


class UsageOut(ApiModel):
    start: datetime
    end: datetime
    usage: list[UsageStatOut]


class OverviewMinuteOut(ApiModel):
    minute: datetime
    sessions_started: int
    sessions_closed: int
    sessions_failed: int
    turns: int
    interrupted_turns: int
    errors: int
    interruption_rate: float | None
    """Interrupted answers per turn; null in a minute without turns."""


class OverviewOut(ApiModel):
    start: datetime
    end: datetime
    minutes: list[OverviewMinuteOut]
    """Every minute of the window, quiet ones included."""


@router.get(
    "/latency",
    summary="Latency percentiles",
    responses=responses(400, 401, 403, 422, 429, 502, 503),
)
async def latency(caller: ReadCaller, start: Start = None, end: End = None) -> LatencyOut:
    """p50/p90/p99 (and mean, max) of each stage by provider and model over a window of at
    most 31 days, from the per-minute rollups. Scope: `read`."""
    services = caller.services
    start, end = window(start, end, longest=MAX_WINDOW)
    stats = await run_in_threadpool(
        services.analytics.call,
        lambda store, db: ch_queries.latency_percentiles(store, db, start=start, end=end),
    )
    return LatencyOut(
        start=start, end=end,
        stats=[LatencyStatOut.model_validate(s, from_attributes=True) for s in stats],
    )  # fmt: skip


@router.get(
    "/usage", summary="Provider usage", responses=responses(400, 401, 403, 422, 429, 502, 503)
)
async def usage(caller: ReadCaller, start: Start = None, end: End = None) -> UsageOut:
    """Requests, tokens, characters and audio seconds by kind, provider and model over a
    window of at most 31 days. Scope: `read`."""
    services = caller.services
    start, end = window(start, end, longest=MAX_WINDOW)
    rows = await run_in_threadpool(
        services.analytics.call,
        lambda store, db: ch_queries.usage_by_model(store, db, start=start, end=end),
    )
    return UsageOut(
        start=start, end=end,
        usage=[UsageStatOut.model_validate(u, from_attributes=True) for u in rows],
    )  # fmt: skip


@router.get(
    "/overview",
    summary="Activity per minute",
    responses=responses(400, 401, 403, 422, 429, 502, 503),
)
async def overview(caller: ReadCaller, start: Start = None, end: End = None) -> OverviewOut:
    """Sessions started, closed and failed, turns, interruptions and errors per minute over
    a window of at most 7 days. Scope: `read`."""
    services = caller.services
    start, end = window(start, end, longest=MAX_OVERVIEW_WINDOW)
    minutes = await run_in_threadpool(
        services.analytics.call,
        lambda store, db: ch_queries.overview(store, db, start=start, end=end),
    )
    return OverviewOut(
        start=start, end=end,
        minutes=[
            OverviewMinuteOut(
                minute=m.minute, sessions_started=m.sessions_started,
                sessions_closed=m.sessions_closed, sessions_failed=m.sessions_failed,
                turns=m.turns, interrupted_turns=m.interrupted_turns, errors=m.errors,
                interruption_rate=m.interruption_rate,
            )
            for m in minutes
        ],
    )  # fmt: skip


# --- analysts' SQL -------------------------------------------------------------------


class QueryRefusedError(ApiError):
    """The statement would write, change settings or reach outside ClickHouse."""

    status_code = 403
    reason = "query_refused"


class QueryTimedOutError(ApiError):
    status_code = 408
    reason = "query_timeout"


class QueryInvalidError(ApiError):
    status_code = 400
    reason = "query_invalid"


class QueryIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "sql": "SELECT type, count() FROM events GROUP BY type ORDER BY 2 DESC",
            "timeout_s": 10, "max_rows": 1000,
        }]},
    )  # fmt: skip

    sql: str = Field(min_length=1, max_length=100_000)
    """One ClickHouse statement; tables of the analytics database are unqualified."""
    timeout_s: float | None = Field(default=None, gt=0, le=300)
    """Seconds it may run, at most `TURNLOG_API_QUERY_TIMEOUT_MAX` (30, also the default)."""
    max_rows: int | None = Field(default=None, ge=1, le=1_000_000)
    """Rows returned at most, at most `TURNLOG_API_QUERY_ROWS_MAX` (10,000, also the
    default)."""
    parameters: dict[str, str | int | float | bool | None] | None = None
    """Values of the statement's `{name:Type}` placeholders, bound by ClickHouse."""


class QueryOut(ApiModel):
    columns: list[str] = Field(examples=[["type", "count()"]])
    types: list[str] = Field(examples=[["LowCardinality(String)", "UInt64"]])
    rows: list[list[Any]] = Field(examples=[[["turnlog.user.transcribed.v1", 812]]])
    truncated: bool
    """Whether the result had more than `max_rows` rows."""
    elapsed_s: float


@router.post(
    "/query", summary="Analysts' read-only SQL",
    responses=responses(400, 401, 403, 422, 429, 502, 503)
    | {408: {"model": ErrorBody, "description": "The query ran out of time"}},
)  # fmt: skip
async def query(body: QueryIn, caller: AdminCaller) -> QueryOut:
    """Run one read-only statement on the analytics database with ClickHouse's own guards
    (`readonly = 1`, `max_execution_time`, a row limit): the analysts' door, also when
    ClickHouse is embedded. Refusals: 403 `query_refused` (writes, DDL, settings, outside
    table functions), 408 `query_timeout`, 400 `query_invalid` (syntax or any other
    ClickHouse error, with its message). Scope: `admin`."""
    services = caller.services
    settings = services.settings
    timeout_s = body.timeout_s or settings.analytics_query_timeout_max_s
    max_rows = body.max_rows or settings.analytics_query_rows_max
    if timeout_s > settings.analytics_query_timeout_max_s:
        raise InvalidRequestError(
            f"timeout_s must be at most {settings.analytics_query_timeout_max_s:g}",
            field="timeout_s",
        )
    if max_rows > settings.analytics_query_rows_max:
        raise InvalidRequestError(
            f"max_rows must be at most {settings.analytics_query_rows_max}", field="max_rows"
        )
    try:
        result = await run_in_threadpool(
            lambda: services.analytics.readonly_query(
                body.sql,
                timeout_s=timeout_s,
                max_rows=max_rows,
                parameters=body.parameters,
            )
        )
    except ReadOnlyViolationError as error:
        raise QueryRefusedError(str(error), field="sql") from error
    except QueryTimeoutError as error:
        raise QueryTimedOutError(str(error), field="sql") from error
    except (QuerySyntaxError, AnalystQueryError) as error:
        raise QueryInvalidError(str(error), field="sql") from error
    return QueryOut.model_validate(result.to_json())


def document_limits(document: dict[str, Any], settings: ApiSettings) -> None:
    """Write this deployment's query limits into the OpenAPI document."""
    fields = document["components"]["schemas"]["QueryIn"]["properties"]
    timeout = next(s for s in fields["timeout_s"]["anyOf"] if s.get("type") != "null")
    timeout["maximum"] = settings.analytics_query_timeout_max_s
    rows = next(s for s in fields["max_rows"]["anyOf"] if s.get("type") != "null")
    rows["maximum"] = settings.analytics_query_rows_max
