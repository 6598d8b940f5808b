"""Analytics queries the API serves, and checksums to compare two projections.

Windows are half-open, ``[start, end)``, in aware datetimes; rollup-based queries count
whole minutes whose start falls in the window. Latencies are seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from turnlog.projections.clickhouse.migrate import quote_database
from turnlog.projections.clickhouse.store import AnalyticsStore

ROLLUP_WINDOW: Final = (
    "minute >= toDateTime({start:Int64}, 'UTC') AND minute < toDateTime({end:Int64}, 'UTC')"
)


@dataclass(frozen=True, slots=True)
class LatencyStat:
    """Latency of one stage for one provider and model over a window, in seconds."""

    stage: str
    provider: str
    model: str
    samples: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True)
class UsageStat:
    """What one provider's model did over a window (from the per-request metrics)."""

    kind: str
    provider: str
    model: str
    requests: int
    cancelled: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    characters: int
    audio_seconds: float


@dataclass(frozen=True, slots=True)
class OverviewMinute:
    """One minute of activity; every minute of the window is present."""

    minute: datetime
    sessions_started: int
    sessions_closed: int
    sessions_failed: int
    turns: int
    interrupted_turns: int
    errors: int

    @property
    def interruption_rate(self) -> float | None:
        """Interrupted answers per answered turn; None in a minute without turns."""
        return self.interrupted_turns / self.turns if self.turns else None


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One event of a session's history, as stored."""

    sequence: int
    event_id: str
    type: str
    time: datetime
    turn_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of a session's events; pass ``next_after`` to get the next page."""

    events: list[SessionEvent]
    next_after: int | None


def latency_percentiles(
    store: AnalyticsStore, database: str, *, start: datetime, end: datetime
) -> list[LatencyStat]:
    """p50/p90/p99 of each stage (eou, stt, llm, tts, e2e) by provider and model."""
    db = quote_database(database)
    rows = store.query(
        f"""SELECT stage, provider, model, sum(samples), sum(total_us), max(max_us),
                   quantilesTimingMerge(0.5, 0.9, 0.99)(quantiles_ms)
            FROM {db}.latency_1m WHERE {ROLLUP_WINDOW}
            GROUP BY stage, provider, model ORDER BY stage, provider, model""",
        parameters=_window(start, end),
    )
    stats = []
    for stage, provider, model, n, total_us, max_us, (p50, p90, p99) in rows:
        mean, top = total_us / n / 1e6, max_us / 1e6
        stats.append(
            LatencyStat(stage, provider, model, int(n), mean, p50 / 1e3, p90 / 1e3, p99 / 1e3, top)
        )
    return stats


def usage_by_model(
    store: AnalyticsStore, database: str, *, start: datetime, end: datetime
) -> list[UsageStat]:
    """Requests, tokens, characters and audio by kind, provider and model."""
    db = quote_database(database)
    rows = store.query(
        f"""SELECT kind, provider, model, sum(requests), sum(cancelled), sum(input_tokens),
                   sum(cached_input_tokens), sum(output_tokens), sum(characters), sum(audio_us)
            FROM {db}.usage_1m WHERE {ROLLUP_WINDOW}
            GROUP BY kind, provider, model ORDER BY kind, provider, model""",
        parameters=_window(start, end),
    )
    return [
        UsageStat(kind, provider, model, int(n), int(cancelled), int(inputs), int(cached),
                  int(outputs), int(characters), audio_us / 1e6)
        for kind, provider, model, n, cancelled, inputs, cached, outputs, characters, audio_us
        in rows
    ]  # fmt: skip


def overview(
    store: AnalyticsStore, database: str, *, start: datetime, end: datetime
) -> list[OverviewMinute]:
    """Sessions, turns, interruptions and errors per minute, quiet minutes included."""
    db = quote_database(database)
    zero = "toUInt64(0)"
    rows = store.query(
        f"""SELECT minute, sum(started), sum(closed), sum(failed), sum(turns),
                   sum(interrupted), sum(errors)
            FROM (
                SELECT minute, uniqExactMerge(started) AS started, uniqExactMerge(closed) AS closed,
                       uniqExactMerge(failed) AS failed, {zero} AS turns, {zero} AS interrupted,
                       {zero} AS errors
                FROM {db}.sessions_1m WHERE {ROLLUP_WINDOW} GROUP BY minute
                UNION ALL
                SELECT minute, {zero}, {zero}, {zero}, uniqExactMerge(turns),
                       uniqExactMerge(interrupted), {zero}
                FROM {db}.turns_1m WHERE {ROLLUP_WINDOW} GROUP BY minute
                UNION ALL
                SELECT minute, {zero}, {zero}, {zero}, {zero}, {zero}, toUInt64(sum(errors))
                FROM {db}.errors_1m WHERE {ROLLUP_WINDOW} GROUP BY minute
            )
            GROUP BY minute
            ORDER BY minute WITH FILL
                FROM toStartOfMinute(toDateTime({{start:Int64}}, 'UTC'))
                TO toDateTime({{end:Int64}}, 'UTC') STEP 60""",
        parameters=_window(start, end),
    )
    return [
        OverviewMinute(_utc(m), int(started), int(closed), int(failed), int(turns),
                       int(interrupted), int(errors))
        for m, started, closed, failed, turns, interrupted, errors in rows
    ]  # fmt: skip


def session_events(
    store: AnalyticsStore, database: str, session_id: str, *, after: int = 0, limit: int = 100
) -> EventPage:
    """The session's events with a sequence above ``after``, in order (keyset pages)."""
    if not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be between 1 and 10000, got {limit}")
    db = quote_database(database)
    rows = store.query(
        f"""SELECT sequence, toString(event_id), type, time, turn_id, data
            FROM {db}.events FINAL
            WHERE session_id = {{session_id:String}} AND sequence > {{after:UInt64}}
            ORDER BY sequence LIMIT {{limit:UInt32}}""",
        parameters={"session_id": session_id, "after": after, "limit": limit + 1},
    )
    events = [
        SessionEvent(int(seq), event_id, type_, _utc(time), turn_id, json.loads(data))
        for seq, event_id, type_, time, turn_id, data in rows[:limit]
    ]
    return EventPage(events, events[-1].sequence if len(rows) > limit else None)


CHECKSUM_TABLES: Final = (
    "events", "turn_facts", "turn_states", "metrics", "usage", "errors",
    "sessions_1m", "turns_1m", "errors_1m", "latency_1m", "usage_1m",
)  # fmt: skip
"""What a rebuild must reproduce: every table but the writer's own positions."""

_UNREPRODUCIBLE: Final = frozenset({"ingested_at"})


def checksum(
    store: AnalyticsStore, database: str, tables: Sequence[str] = CHECKSUM_TABLES
) -> dict[str, str]:
    """Per table, ``rows:digest`` of its deduplicated, merged content (FINAL, aggregate
    states finalized), independent of row order, parts and merges: a live projection and
    one rebuilt from the same log give the same digests."""
    db = quote_database(database)
    digests = {}
    for table in tables:
        columns = store.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {table:String} ORDER BY position",
            parameters={"db": database, "table": table},
        )
        values = ", ".join(
            _finalized(name, type_) for name, type_ in columns if name not in _UNREPRODUCIBLE
        )
        ((count, digest),) = store.query(
            f"SELECT count(), sum(cityHash64(tuple({values}))) FROM {db}.`{table}` FINAL"
        )
        digests[table] = f"{int(count)}:{int(digest):016x}"
    return digests


def _finalized(column: str, type_: str) -> str:
    if type_.startswith("AggregateFunction("):
        return f"finalizeAggregation(`{column}`)"
    return f"`{column}`"


def _window(start: datetime, end: datetime) -> dict[str, int]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes")
    if start >= end:
        raise ValueError(f"the window is empty: start {start} is not before end {end}")
    return {"start": int(start.timestamp()), "end": int(end.timestamp())}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
