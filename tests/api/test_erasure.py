"""Erasure and sealed fields through the API: a reader sees clear text that is sealed at
rest; an admin erases a session or a participant (idempotent, 404 for what is unknown,
403 without the scope); with Kafka down the erasure is pending, then the retention job
completes it; the proof on `turnlog.erasures` names no personal data.

Integration: the app on a real PostgreSQL schema and real Kafka topics of its own."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Keys
from tests.api.sessions_data import RECORDED, copy_session, write_postgres
from tests.conftest import PgSchema, Topics, unique
from turnlog.api.db import Database
from turnlog.api.retention import RetentionJob
from turnlog.projections.postgres.keystore import store_records
from turnlog.projections.records import SourceRecord
from turnlog.schemas import (
    ERASURES_TOPIC,
    KEYS_TOPIC,
    DataKeyIssued,
    ParticipantJoined,
    agent_source,
    decode,
    trusted_event,
)
from turnlog.schemas.sealing import DataKey, WrappingKey, generate_kek, seal_event, subject_digest

pytestmark = pytest.mark.integration

IDENTITY = "ada@example.com"


@pytest.fixture(scope="module")
def kek(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WrappingKey]:
    private_pem, public_pem = generate_kek()
    path = tmp_path_factory.mktemp("kek") / "kek.pem"
    path.write_bytes(private_pem)
    return path, WrappingKey.from_pem(public_pem)


def sealed_session(pg_schema: PgSchema, wrapping: WrappingKey, *, identity: str = IDENTITY) -> str:
    """A recorded session under a new id, sealed with its own key (stored wrapped, with
    the participant's digest) and projected into the test's schema; returns its id."""
    session_id = unique("sess-")
    template = RECORDED["tutor_happy"]
    events = copy_session(template, session_id=session_id, start=template[0].time)
    key = DataKey.generate(session_id)
    joined = trusted_event(ParticipantJoined(identity=identity, sid="PA_x", kind="standard"),
                           session_id=session_id, sequence=len(events) + 1,
                           source=agent_source("t", "w"), subject=events[0].subject)  # fmt: skip
    sealed = [seal_event(e, key) for e in [*events, joined]]
    issued = trusted_event(
        DataKeyIssued(key_id=session_id, kek_id=wrapping.kek_id,
                      wrapped_key=base64.b64encode(wrapping.wrap(key)).decode(),
                      subject_digests=(subject_digest(identity),)),
        session_id=session_id, sequence=1, source=agent_source("t", "w"), subject="r",
    )  # fmt: skip
    with psycopg.connect(pg_schema.dsn, autocommit=True) as conn:
        write_postgres(conn, pg_schema.name, sealed)
        store_records(conn, schema=pg_schema.name, consumer="test-keys",
                      records=[SourceRecord("k", 0, 0, issued)], offsets={})  # fmt: skip
    return session_id


@pytest.fixture
def app(make_client: AppFactory, kek: tuple[Path, WrappingKey], topics: Topics) -> TestClient:
    return make_client(kek_private_key=kek[0], topic_prefix=topics.prefix)


def erasure_records(bootstrap: str, topic: str) -> list[Any]:
    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=5000)
            return [r for records in batch.values() for r in records]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_a_reader_sees_clear_text_that_is_sealed_at_rest(
    app: TestClient, keys: Keys, pg_schema: PgSchema, kek: tuple[Path, WrappingKey]
) -> None:
    session_id = sealed_session(pg_schema, kek[1])
    turns = app.get(f"/v1/sessions/{session_id}/transcript", headers=keys.auth(keys.read)).json()
    texts = [t["text"] for t in turns["turns"]]
    expected = [e.data.text for e in RECORDED["tutor_happy"] if e.type.endswith("item_added.v1")]
    assert texts == [t for t in expected if t] or texts == expected
    with psycopg.connect(pg_schema.dsn, autocommit=True) as conn:
        stored = conn.execute(f'SELECT text FROM "{pg_schema.name}".messages').fetchall()
    assert stored
    assert all(t.startswith("tlsealed1:") for (t,) in stored if t)
    detail = app.get(f"/v1/sessions/{session_id}", headers=keys.auth(keys.read)).json()
    assert IDENTITY in [p["identity"] for p in detail["participants"]]
    assert detail["erasure"] is None


def test_an_admin_erases_a_session_once(
    app: TestClient, keys: Keys, pg_schema: PgSchema, kek: tuple[Path, WrappingKey],
    topics: Topics, kafka_bootstrap: str,
) -> None:  # fmt: skip
    session_id = sealed_session(pg_schema, kek[1])
    kept = sealed_session(pg_schema, kek[1], identity="grace@example.com")
    assert app.delete(f"/v1/sessions/{session_id}", headers=keys.auth(keys.read)).status_code == 403
    first = app.delete(f"/v1/sessions/{session_id}?reason=ticket-9", headers=keys.auth(keys.admin))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "completed"
    assert body["already_erased"] is False
    assert body["session_ids"] == [session_id]
    assert body["requested_by"] == "test-admin"
    steps = {s["store"]: s for s in body["steps"]}
    assert steps["key_store"]["count"] == 1
    assert steps["postgres"]["count"] > 0
    assert steps["kafka"]["count"] == 2
    again = app.delete(f"/v1/sessions/{session_id}", headers=keys.auth(keys.admin)).json()
    assert again["erasure_id"] == body["erasure_id"]
    assert again["already_erased"] is True
    # what the console reads: erased, explained, no transcript, no participants
    detail = app.get(f"/v1/sessions/{session_id}", headers=keys.auth(keys.read)).json()
    assert detail["erasure"]["erasure_id"] == body["erasure_id"]
    assert detail["participants"] == []
    transcript = app.get(f"/v1/sessions/{session_id}/transcript", headers=keys.auth(keys.read))
    assert transcript.json()["turns"] == []
    listed = app.get("/v1/sessions?limit=50", headers=keys.auth(keys.read)).json()["items"]
    by_id = {i["session_id"]: i for i in listed}
    assert by_id[session_id]["erasure"]["reason"] == "ticket-9"
    assert by_id[kept]["erasure"] is None
    assert sorted(by_id[kept]["participants"]) == ["grace@example.com", "student-1"]  # untouched
    # the proof: names the session and the steps, no personal data
    records = erasure_records(kafka_bootstrap, topics.prefix + ERASURES_TOPIC)
    proofs = [decode(r.value) for r in records]
    assert [p.data.session_ids for p in proofs] == [(session_id,)]
    assert b"@example.com" not in records[0].value
    tombstones = erasure_records(kafka_bootstrap, topics.prefix + KEYS_TOPIC)
    assert [(r.key, r.value) for r in tombstones] == [(session_id.encode(), None)]
    got = app.get(f"/v1/erasures/{body['erasure_id']}", headers=keys.auth(keys.admin)).json()
    assert got["session_ids"] == [session_id]


def test_a_participant_is_erased_in_every_session_and_only_there(
    app: TestClient, keys: Keys, pg_schema: PgSchema, kek: tuple[Path, WrappingKey]
) -> None:
    hers = [sealed_session(pg_schema, kek[1], identity="lin@example.com") for _ in range(2)]
    other = sealed_session(pg_schema, kek[1], identity="bo@example.com")
    request = {"identity": "lin@example.com", "reason": "GDPR art. 17"}
    answer = app.post("/v1/erasures", json=request, headers=keys.auth(keys.admin))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sorted(body["session_ids"]) == sorted(hers)
    assert body["scope"] == "participant"
    assert body["subject_digest"] == subject_digest("lin@example.com")
    assert "lin@" not in answer.text
    other_detail = app.get(f"/v1/sessions/{other}", headers=keys.auth(keys.read)).json()
    assert other_detail["erasure"] is None
    unknown = app.post("/v1/erasures", json={"identity": "nobody@example.com"},
                       headers=keys.auth(keys.admin))  # fmt: skip
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
    assert unknown.json()["field"] == "identity"


def test_erasing_an_unknown_session_is_404(app: TestClient, keys: Keys) -> None:
    answer = app.delete("/v1/sessions/no-such-session", headers=keys.auth(keys.admin))
    assert answer.status_code == 404
    assert "no-such-session" in answer.text


def test_with_kafka_down_the_erasure_is_pending_until_the_retention_job_runs(
    make_client: AppFactory, keys: Keys, pg_schema: PgSchema, kek: tuple[Path, WrappingKey],
    topics: Topics, kafka_bootstrap: str,
) -> None:  # fmt: skip
    down = make_client(kek_private_key=kek[0], topic_prefix=topics.prefix,
                       kafka_bootstrap="127.0.0.1:1")  # fmt: skip
    session_id = sealed_session(pg_schema, kek[1])
    answer = down.delete(f"/v1/sessions/{session_id}", headers=keys.auth(keys.admin))
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "pending"
    # the keys are gone at once: nothing opens any more
    with psycopg.connect(pg_schema.dsn, autocommit=True) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{pg_schema.name}".data_keys '
                            "WHERE key_id = %s", (session_id,)).fetchone() == (0,)  # fmt: skip
    detail = down.get(f"/v1/sessions/{session_id}", headers=keys.auth(keys.read)).json()
    assert detail["erasure"]["status"] == "pending"

    async def run_job() -> int:
        db = Database(pg_schema.dsn, schema=pg_schema.name, size=1)
        await db.open()
        try:
            job = RetentionJob(db, bootstrap=kafka_bootstrap, topic_prefix=topics.prefix,
                               read_models_days=None, interval_s=3600)  # fmt: skip
            return (await job.run_once()).completed_pending
        finally:
            await db.close()

    assert asyncio.run(run_job()) == 1
    proofs = erasure_records(kafka_bootstrap, topics.prefix + ERASURES_TOPIC)
    assert [decode(r.value).data.session_ids for r in proofs] == [(session_id,)]
