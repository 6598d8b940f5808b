"""The read-model tables as the projector writes them: key columns, column types, and the
rule by which each column merges when several events write the same row.

Every rule is order-independent, so a session's events give the same rows whatever order
they arrive in: least, greatest, sum (each event is applied once, thanks to the ledger),
sorted union, written once, and "latest": the value written by the event with the greatest
sequence, kept with that sequence in a stamp column. `merge_into` is the rule in Python
(the batch fold and the in-memory projection use it); `statements` renders the same rule
in SQL. Both read this one table of specs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class Merge(enum.Enum):
    """How a column combines the value already stored with a newly written one."""

    KEEP = "keep"
    """A fact written once: the stored value stays."""
    LEAST = "least"
    """The smaller value; NULL counts as absent."""
    GREATEST = "greatest"
    """The greater value; NULL counts as absent."""
    SUM = "sum"
    """A counter: the values add up."""
    UNION = "union"
    """A text array: the sorted set of both (code point order)."""
    LATEST = "latest"
    """The value written with the greater stamp (the writing event's sequence)."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    """PostgreSQL type: text, bigint, integer, double precision, boolean, timestamptz,
    text[] or jsonb."""
    merge: Merge
    stamp: str | None = None
    """For `LATEST`: the stamp column holding the sequence of the value's writer."""
    default: Any = None
    """Value of a new row when no event wrote the column; also the column's default in
    the migrations."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key: tuple[Column, ...]
    columns: tuple[Column, ...]
    """The non-key columns."""
    by_name: Mapping[str, Column] = field(init=False, repr=False)
    groups: Mapping[str, tuple[Column, ...]] = field(init=False, repr=False)
    """Stamp column -> the `LATEST` columns it versions."""

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in (*self.key, *self.columns)}
        groups: dict[str, list[Column]] = {}
        for column in self.columns:
            if column.merge is Merge.LATEST:
                stamp = by_name.get(column.stamp or "")
                if stamp is None or stamp.merge is not Merge.GREATEST:
                    raise ValueError(f"{self.name}.{column.name}: stamp must be a greatest column")
                groups.setdefault(stamp.name, []).append(column)
        object.__setattr__(self, "by_name", by_name)
        object.__setattr__(self, "groups", {s: tuple(cs) for s, cs in groups.items()})

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.key)

    @property
    def all_columns(self) -> tuple[Column, ...]:
        return (*self.key, *self.columns)

    @property
    def facts_only(self) -> bool:
        """Whether every row is one immutable fact (a second write changes nothing)."""
        return all(c.merge is Merge.KEEP for c in self.columns)


def _text(name: str, merge: Merge = Merge.KEEP, **kw: Any) -> Column:
    return Column(name, "text", merge, **kw)


def _latest(stamp: str, *specs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, type_, Merge.LATEST, stamp=stamp) for name, type_ in specs)


def _stamp(name: str) -> Column:
    return Column(name, "bigint", Merge.GREATEST)


def _counter(name: str) -> Column:
    return Column(name, "integer", Merge.SUM, default=0)


def _facts(*specs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, type_, Merge.KEEP) for name, type_ in specs)


TS: Final = "timestamptz"
FLOAT: Final = "double precision"

SESSIONS: Final = Table(
    "sessions",
    key=(_text("session_id"),),
    columns=(
        _text("room", Merge.LEAST),
        Column("started_at", TS, Merge.LEAST),
        Column("last_event_at", TS, Merge.GREATEST),
        Column("last_sequence", "bigint", Merge.GREATEST, default=0),
        _counter("event_count"),
        _stamp("started_seq"),
        *_latest(
            "started_seq",
            ("agent_name", "text"), ("job_id", "text"), ("worker_id", "text"),
            ("room_sid", "text"), ("accepted_at", TS), ("linked_identity", "text"),
            ("stt_provider", "text"), ("stt_model", "text"), ("llm_provider", "text"),
            ("llm_model", "text"), ("tts_provider", "text"), ("tts_model", "text"),
        ),
        _stamp("closed_seq"),
        Column("status", "text", Merge.LATEST, stamp="closed_seq", default="active"),
        *_latest("closed_seq", ("close_reason", "text"), ("ended_at", TS), ("close_error", "text")),
        _stamp("agent_seq"),
        *_latest("agent_seq", ("agent_id", "text")),
        Column("agent_ids", "text[]", Merge.UNION, default=()),
        Column("participants", "text[]", Merge.UNION, default=()),
        _counter("user_turns"),
        _counter("assistant_turns"),
        _counter("interruptions"),
        _counter("tool_calls"),
        _counter("errors"),
        _counter("false_interruptions"),
        _counter("handoffs"),
        _counter("turn_timeouts"),
        _stamp("usage_seq"),
        *_latest(
            "usage_seq",
            ("usage", "jsonb"), ("llm_prompt_tokens", "bigint"),
            ("llm_completion_tokens", "bigint"), ("tts_characters", "bigint"),
            ("tts_audio_s", FLOAT), ("stt_audio_s", FLOAT),
        ),
        _stamp("error_seq"),
        *_latest("error_seq", ("last_error", "text"), ("last_error_source", "text")),
    ),
)

PARTICIPANTS: Final = Table(
    "participants",
    key=(_text("session_id"), _text("identity")),
    columns=(
        Column("joined_at", TS, Merge.LEAST),
        _counter("joins"),
        _stamp("joined_seq"),
        *_latest(
            "joined_seq", ("sid", "text"), ("name", "text"), ("kind", "text"),
            ("last_joined_at", TS),
        ),
        _stamp("left_seq"),
        *_latest("left_seq", ("left_at", TS), ("disconnect_reason", "text")),
    ),
)

MESSAGES: Final = Table(
    "messages",
    key=(_text("session_id"), Column("sequence", "bigint", Merge.KEEP)),
    columns=_facts(
        ("item_id", "text"), ("turn_id", "text"), ("role", "text"), ("text", "text"),
        ("interrupted", "boolean"), ("confidence", FLOAT), ("created_at", TS),
        ("agent_id", "text"), ("started_speaking_at", TS), ("stopped_speaking_at", TS),
        ("transcription_delay_s", FLOAT), ("end_of_utterance_delay_s", FLOAT),
        ("on_user_turn_completed_delay_s", FLOAT), ("llm_ttft_s", FLOAT),
        ("llm_tps", FLOAT), ("llm_ttfs_s", FLOAT), ("tts_ttfb_s", FLOAT),
        ("playback_latency_s", FLOAT), ("e2e_latency_s", FLOAT),
        ("provider_request_ids", "text[]"),
    ),
)

TOOL_CALLS: Final = Table(
    "tool_calls",
    key=(_text("session_id"), _text("call_id")),
    columns=(
        _stamp("sequence"),
        *_latest(
            "sequence",
            ("position", "integer"), ("turn_id", "text"), ("name", "text"),
            ("arguments", "text"), ("output", "text"), ("is_error", "boolean"),
            ("reply_required", "boolean"), ("started_at", TS), ("duration_s", FLOAT),
            ("group_id", "text"), ("created_at", TS),
        ),
    ),
)

TRANSCRIPTIONS: Final = Table(
    "transcriptions",
    key=(_text("session_id"), Column("sequence", "bigint", Merge.KEEP)),
    columns=_facts(
        ("turn_id", "text"), ("is_final", "boolean"), ("text", "text"),
        ("language", "text"), ("confidence", FLOAT), ("speaker_id", "text"),
        ("created_at", TS),
    ),
)

TABLES: Final[Mapping[str, Table]] = {
    t.name: t for t in (SESSIONS, PARTICIPANTS, MESSAGES, TOOL_CALLS, TRANSCRIPTIONS)
}
"""Every read model the projector writes, by name; also what `checksum` digests."""

DURABLE_TABLES: Final = (
    "api_keys", "token_issuances", "console_sessions",
    "erasures", "erased_sessions", "data_keys", "key_subjects",
)  # fmt: skip
"""Tables of the schema that are not read models: the only copy of what they hold (API
keys, the key store, the erasures). A rebuild's swap moves them into the rebuilt schema."""

PERSONAL_TABLES: Final = ("participants", "messages", "tool_calls", "transcriptions")
"""Read models whose rows exist for personal data: an erased session keeps none."""
PERSONAL_SESSION_COLUMNS: Final[Mapping[str, Any]] = {
    "linked_identity": None, "participants": (), "close_error": None, "last_error": None,
}  # fmt: skip
"""Columns of `sessions` that hold personal data, and what an erased session keeps there;
its other columns (times, counters, models, status) stay."""


def new_row(table: Table, key: tuple[Any, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """The row a first write creates: the written values, defaults for the rest."""
    row = dict(zip(table.key_names, key, strict=True))
    for column in table.columns:
        row[column.name] = values.get(column.name, column.default)
    for name in values:
        if name not in table.by_name:
            raise KeyError(f"{table.name} has no column {name!r}")
    return row


def merge_into(table: Table, row: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Merge one write (`values`, some non-key columns) into the stored `row`, in place.

    The Python twin of the SQL in `statements.upsert`. A stamp is a greatest column: when
    the written stamp beats the stored one, the write's whole group replaces the stored
    group (columns it omits take their default), as `excluded` does in the SQL."""
    by_name, groups = table.by_name, table.groups
    for name, value in values.items():
        column = by_name.get(name)
        if column is None:
            raise KeyError(f"{table.name} has no column {name!r}")
        merge = column.merge
        if merge is Merge.SUM:
            row[name] += value
        elif value is None or merge is Merge.KEEP or merge is Merge.LATEST:
            continue
        elif merge is Merge.GREATEST:
            current = row[name]
            if current is None or value > current:
                row[name] = value
                for member in groups.get(name, ()):
                    row[member.name] = values.get(member.name, member.default)
        elif merge is Merge.LEAST:
            current = row[name]
            if current is None or value < current:
                row[name] = value
        elif merge is Merge.UNION:
            row[name] = tuple(sorted({*row[name], *value}))
