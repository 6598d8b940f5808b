"""Read-only SQL for analysts, while the projection keeps writing.

``run_readonly_query`` runs one statement with ClickHouse's own guards: ``readonly = 1``
(no writes, no DDL, no table functions that reach outside, no changing the limits from
inside the query), ``max_execution_time``, and the ``limit`` setting, which caps the rows
of the outermost result (subqueries are untouched). On a server any ClickHouse client can
do the same; an embedded chDB folder can only be opened by the process that owns it, so
that process serves ``make_query_app`` on loopback (see ``query_endpoint``) and the
``python -m turnlog.projections.clickhouse query`` command finds it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import FastAPI, Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from turnlog.projections.clickhouse.store import AnalyticsStore, QueryFailedError

ANALYST_QUERIES_FILE: Final = Path(__file__).parent / "analyst_queries.sql"


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What a query returned: at most ``max_rows`` rows, ``truncated`` if it had more;
    ``types`` are the ClickHouse types of the columns."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    elapsed_s: float
    types: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; datetimes become ISO strings, UUIDs and Decimals strings."""
        payload: dict[str, Any] = jsonable_encoder(
            {"columns": self.columns, "types": self.types, "rows": [list(r) for r in self.rows]},
            custom_encoder={float: _json_float},
        )
        return payload | {"truncated": self.truncated, "elapsed_s": self.elapsed_s}


class AnalystQueryError(QueryFailedError):
    """An analyst's query was refused or failed. ``code`` is ClickHouse's error code."""

    status_code = 400


class ReadOnlyViolationError(AnalystQueryError):
    """The query would write, change the schema or settings, or reach outside ClickHouse."""

    status_code = 403


class QueryTimeoutError(AnalystQueryError):
    """The query ran longer than its time limit and was stopped."""

    status_code = 408


class QuerySyntaxError(AnalystQueryError):
    """The query is not valid ClickHouse SQL."""


_ERRORS_BY_CODE: Final[dict[int, type[AnalystQueryError]]] = {
    62: QuerySyntaxError,  # SYNTAX_ERROR
    159: QueryTimeoutError,  # TIMEOUT_EXCEEDED
    160: QueryTimeoutError,  # TOO_SLOW (estimated to exceed the limit)
    164: ReadOnlyViolationError,  # READONLY
    497: ReadOnlyViolationError,  # ACCESS_DENIED
}


def run_readonly_query(
    store: AnalyticsStore,
    sql: str,
    *,
    timeout_s: float = 10,
    max_rows: int = 10_000,
    database: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> QueryResult:
    """Run one read-only statement; ``database`` is its default database, ``parameters``
    the values of its ``{name:Type}`` placeholders. Raises
    ``ReadOnlyViolationError``, ``QueryTimeoutError``, ``QuerySyntaxError`` or
    ``AnalystQueryError``."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    settings = {
        "max_execution_time": timeout_s,
        "timeout_overflow_mode": "throw",
        "limit": max_rows + 1,  # one more than asked, to tell a full result from a cut one
        "readonly": 1,  # last: a read-only session can change no setting after it
    }
    started = time.monotonic()
    try:
        result = store.select(sql, parameters=parameters, settings=settings, database=database)
    except QueryFailedError as exc:
        raise classify(str(exc), exc.code) from exc
    elapsed = time.monotonic() - started
    truncated = len(result.rows) > max_rows
    return QueryResult(
        result.columns, result.rows[:max_rows], truncated, round(elapsed, 6), result.types
    )


def classify(message: str, code: int | None) -> AnalystQueryError:
    """The typed error for a ClickHouse error code (and the message it came with)."""
    error_type = _ERRORS_BY_CODE.get(code or -1, AnalystQueryError)
    return error_type(_first_line(message), code=code)


def error_from_name(name: str, message: str, code: int | None) -> AnalystQueryError:
    """The typed error a query endpoint reported by class name."""
    known: dict[str, type[AnalystQueryError]] = {
        cls.__name__: cls for cls in (*_ERRORS_BY_CODE.values(), AnalystQueryError)
    }
    return known.get(name, AnalystQueryError)(message, code=code)


# --- the query endpoint's ASGI app -----------------------------------------------------


class QueryRequest(BaseModel):
    """One analyst query."""

    sql: str = Field(min_length=1, max_length=100_000)
    """The statement, ClickHouse SQL."""
    timeout_s: float = Field(default=10, gt=0, le=300)
    """Seconds the query may run."""
    max_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    """Rows returned at most."""
    database: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Default database of the query; None for the app's default."""
    parameters: dict[str, Any] | None = None
    """Values of the statement's ``{name:Type}`` placeholders, bound by ClickHouse."""


class QueryResponse(BaseModel):
    """Its result; values as JSON (datetimes as ISO strings), with their ClickHouse types."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_s: float


def make_query_app(
    store: AnalyticsStore, *, token: str | None, database: str | None = None
) -> FastAPI:
    """``POST /query`` (a ``QueryRequest``) and ``GET /health``, for the owning process to
    serve on loopback. With a ``token``, requests need ``Authorization: Bearer <token>``.
    Refusals answer ``{"error": <class>, "message", "code"}`` with 400 (invalid), 401
    (token), 403 (not read-only) or 408 (timeout)."""
    app = FastAPI(title="Turnlog analytics query", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "store": store.url}

    @app.post("/query", response_model=QueryResponse)
    def query(
        request: QueryRequest, authorization: Annotated[str | None, Header()] = None
    ) -> Any:
        if token is not None and not _authorized(authorization, token):
            return _refusal(401, "Unauthorized", "a valid 'Authorization: Bearer' is required")
        try:
            result = run_readonly_query(
                store, request.sql, timeout_s=request.timeout_s, max_rows=request.max_rows,
                database=request.database or database, parameters=request.parameters,
            )  # fmt: skip
        except AnalystQueryError as exc:
            return _refusal(exc.status_code, type(exc).__name__, str(exc), exc.code)
        return result.to_json()

    return app


def _authorized(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.encode(), token.encode())


def _refusal(status: int, error: str, message: str, code: int | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, "code": code}, status_code=status)


def _first_line(message: str) -> str:
    # ClickHouse appends stack traces and version trailers; the first line says it all.
    line = message.strip().splitlines()[0] if message.strip() else "query failed"
    return re.sub(r"\s*\(version [^)]*\)", "", line)


def _json_float(value: float) -> float | str:
    return value if value == value and value not in (float("inf"), float("-inf")) else str(value)


# --- the example queries of the README ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnalystQuery:
    """One example query of ``analyst_queries.sql``."""

    name: str
    description: str
    sql: str


def analyst_queries(path: Path = ANALYST_QUERIES_FILE) -> dict[str, AnalystQuery]:
    """The example queries, by name: blocks headed ``-- name: <name>``, then comment lines
    that describe it, then the SQL. Tables are unqualified: run them with a default
    database (``--database turnlog``)."""
    queries: dict[str, AnalystQuery] = {}
    for block in re.split(r"^-- name: ", path.read_text(), flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        lines = body.strip().splitlines()
        description = " ".join(
            line.removeprefix("--").strip() for line in lines if line.startswith("--")
        )
        sql = "\n".join(line for line in lines if not line.startswith("--")).strip()
        queries[name.strip()] = AnalystQuery(name.strip(), description, sql.rstrip(";"))
    return queries
