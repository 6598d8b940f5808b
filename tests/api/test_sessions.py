"""The session routes on read models written by the real PostgreSQL projection: list
(filters, keyset pages stable while sessions are added), detail, transcript, and the
event history from the ClickHouse projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Keys
from tests.api.sessions_data import (
    RECORDED,
    all_recorded,
    copy_session,
    write_clickhouse,
    write_postgres,
)
from tests.conftest import PgSchema
from turnlog.projections.clickhouse.store import AnalyticsStore

pytestmark = pytest.mark.integration


@pytest.fixture
def recorded(pg_schema: PgSchema) -> None:
    with pg_schema.connect() as conn:
        write_postgres(conn, pg_schema.name, all_recorded())


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["session_id"] for item in answer["items"]]


@pytest.mark.usefixtures("recorded")
def test_list_with_filters(client: TestClient, keys: Keys) -> None:
    auth = keys.auth(keys.read)

    def listed(**params: Any) -> list[str]:
        answer = client.get("/v1/sessions", params=params, headers=auth)
        assert answer.status_code == 200, answer.text
        return ids(answer.json())

    assert listed() == ["sess_support_handoff", "sess_tutor_failed", "sess_tutor_happy"]
    assert listed(agent="tutor") == ["sess_tutor_failed", "sess_tutor_happy"]
    assert listed(room="math-room-1") == ["sess_tutor_happy"]
    assert listed(status="failed") == ["sess_tutor_failed"]
    assert listed(agent="tutor", status="closed") == ["sess_tutor_happy"]
    assert listed(started_from="2025-03-03T10:00:00Z", started_before="2025-03-04T00:00:00Z") == [
        "sess_tutor_failed"
    ]
    assert listed(room="nowhere") == []
    first = client.get("/v1/sessions", params={"room": "math-room-1"}, headers=auth).json()
    happy = first["items"][0]
    assert (happy["status"], happy["user_turns"], happy["interruptions"], happy["room"]) == (
        "closed",
        4,
        1,
        "math-room-1",
    )
    assert first["next_cursor"] is None


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"status": "paused"}, 422, "query.status"),
        ({"limit": 0}, 422, "query.limit"),
        ({"limit": 501}, 422, "query.limit"),
        ({"started_from": "2025-03-03T10:00:00"}, 422, "query.started_from"),  # naive
        ({"started_from": "yesterday"}, 422, "query.started_from"),
        ({"cursor": "not-a-cursor"}, 400, "cursor"),
        ({"rooom": "math-room-1"}, 422, "query.rooom"),  # misspelt: not ignored
        ({"room": ["a", "b"]}, 422, "query.room"),  # one value per parameter
        ({"started_from": "0.5"}, 422, "query.started_from"),  # not a Unix time
    ],
)
def test_list_refuses_bad_parameters(
    client: TestClient, keys: Keys, params: dict[str, Any], status: int, field: str
) -> None:
    answer = client.get("/v1/sessions", params=params, headers=keys.auth(keys.read))
    assert answer.status_code == status
    assert answer.json()["field"] == field


def test_keyset_pages_are_stable_while_sessions_are_added(
    client: TestClient, keys: Keys, pg_schema: PgSchema
) -> None:
    template = RECORDED["tutor_happy"]
    base = datetime(2025, 6, 1, 12, tzinfo=UTC)
    offset = 0

    def add(n: int, start: datetime) -> list[str]:
        nonlocal offset
        made = []
        with pg_schema.connect() as conn:
            for i in range(n):
                sid = f"sess_{start:%H%M}_{i:02d}"
                events = copy_session(template, session_id=sid, start=start + timedelta(seconds=i))
                write_postgres(conn, pg_schema.name, events, first_offset=offset)
                offset += len(events)
                made.append(sid)
        return made

    existing = add(12, base)
    expected = sorted(existing, reverse=True)  # same minute: ids sort like start times
    auth = keys.auth(keys.read)
    seen: list[str] = []
    cursor: str | None = None
    for page in range(10):
        params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        answer = client.get("/v1/sessions", params=params, headers=auth).json()
        seen += ids(answer)
        cursor = answer["next_cursor"]
        # Meanwhile, newer sessions start (they belong before the first page).
        add(3, base + timedelta(hours=page + 1))
        if cursor is None:
            break
    assert seen == expected  # nothing repeated, nothing skipped
    newest = client.get("/v1/sessions", params={"limit": 3}, headers=auth).json()
    assert ids(newest)[0].startswith(f"sess_{base + timedelta(hours=3):%H%M}")


@pytest.mark.usefixtures("recorded")
def test_session_detail_with_counts_and_latency(client: TestClient, keys: Keys) -> None:
    answer = client.get("/v1/sessions/sess_tutor_happy", headers=keys.auth(keys.read))
    assert answer.status_code == 200
    out = answer.json()
    assert (out["user_turns"], out["assistant_turns"], out["interruptions"]) == (4, 4, 1)
    assert (out["duration_s"], out["event_count"], out["false_interruptions"]) == (22.56, 68, 1)
    assert out["models"]["llm_model"] == "gpt-4o-mini"
    assert out["latency"]["measured_turns"] == 4
    assert out["latency"]["e2e_p50_s"] == pytest.approx((0.77 + 0.82) / 2)
    assert [(p["identity"], p["name"], p["present"]) for p in out["participants"]] == [
        ("student-1", "Ada", False)
    ]


@pytest.mark.usefixtures("recorded")
def test_transcript_in_order_with_interruptions_and_latency(client: TestClient, keys: Keys) -> None:
    auth = keys.auth(keys.read)
    out = client.get("/v1/sessions/sess_tutor_happy/transcript", headers=auth).json()
    turns = out["turns"]
    assert out["session_id"] == "sess_tutor_happy"
    assert [t["role"] for t in turns] == ["user", "assistant"] * 4
    assert [(t["text"], t["interrupted"]) for t in turns[4:6]] == [
        ("tell me about prime numbers", False),
        ("A prime number has exactly two", True),
    ]
    assert [t["e2e_latency_s"] for t in turns if t["role"] == "assistant"] == [
        0.82,
        1.35,
        0.77,
        0.69,
    ]
    assert turns[1]["llm_ttft_s"] == 0.41
    assert turns[0]["confidence"] == 0.94
    assert [t["sequence"] for t in turns] == sorted(t["sequence"] for t in turns)
    assert out["next_after"] is None
    first = client.get("/v1/sessions/sess_tutor_happy/transcript", params={"limit": 3},
                       headers=auth).json()  # fmt: skip
    assert first["turns"] == turns[:3]
    rest = client.get(
        "/v1/sessions/sess_tutor_happy/transcript",
        params={"after_sequence": first["next_after"]},
        headers=auth,
    ).json()
    assert rest["turns"] == turns[3:]


@pytest.mark.usefixtures("recorded")
def test_unknown_sessions_are_404(client: TestClient, keys: Keys) -> None:
    auth = keys.auth(keys.read)
    for path in ("/v1/sessions/nope", "/v1/sessions/nope/transcript",
                 "/v1/sessions/nope/events", "/v1/sessions/nope/live"):  # fmt: skip
        answer = client.get(path, headers=auth)
        assert answer.status_code == 404, path
        assert answer.json() == {
            "error": "not_found",
            "message": "no session 'nope'",
            "field": "session_id",
        }
    # A known session past its last message is an empty page, not a 404.
    empty = client.get("/v1/sessions/sess_tutor_happy/transcript",
                       params={"after_sequence": 10_000}, headers=auth)  # fmt: skip
    assert (empty.status_code, empty.json()["turns"]) == (200, [])


@pytest.mark.usefixtures("recorded")
def test_read_routes_need_the_read_scope(client: TestClient, keys: Keys) -> None:
    for key in (keys.tokens, keys.admin):
        answer = client.get("/v1/sessions/sess_tutor_happy/transcript", headers=keys.auth(key))
        assert answer.status_code == 403
    assert client.get("/v1/sessions").status_code == 401


def test_event_history_from_the_analytics_store(
    make_client: AppFactory, keys: Keys, pg_schema: PgSchema, analytics_store: AnalyticsStore,
    ch_database: str,
) -> None:  # fmt: skip
    events = all_recorded()
    with pg_schema.connect() as conn:
        write_postgres(conn, pg_schema.name, events)
    write_clickhouse(analytics_store, ch_database, events)
    client = make_client(clickhouse_database=ch_database)
    auth = keys.auth(keys.read)
    happy = RECORDED["tutor_happy"]
    seen: list[dict[str, Any]] = []
    after = 0
    for _ in range(10):
        page = client.get("/v1/sessions/sess_tutor_happy/events",
                          params={"after": after, "limit": 30}, headers=auth).json()  # fmt: skip
        seen += page["events"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert [e["sequence"] for e in seen] == [e.sequence for e in happy]
    assert [e["type"] for e in seen] == [e.type for e in happy]
    assert [e["event_id"] for e in seen] == [e.id for e in happy]
    closed = seen[-1]
    assert closed["data"]["reason"] == "participant_disconnected"


def test_a_nul_character_is_refused_by_name_not_a_500(client: TestClient, keys: Keys) -> None:
    auth = keys.auth(keys.read)  # found by the OpenAPI fuzz: PostgreSQL refuses NUL in text

    listed = client.get("/v1/sessions", params={"room": "a\x00b"}, headers=auth)
    one = client.get("/v1/sessions/a%00b/events", headers=auth)

    assert listed.status_code == 422
    assert listed.json()["field"] == "query.room"
    assert listed.json()["message"] == "query.room: must not contain a NUL character"
    assert one.status_code == 422
    assert one.json()["field"] == "path.session_id"
