"""The streams worker (`python -m turnlog.streams worker`, every projection, each its own
consumer group) on the real broker, PostgreSQL and chDB, fed with the recorded sessions.

One worker with its own topics, schema and chDB folder; the tests run in order and each
adds to what the worker and the reference (the projections applied in the test process)
hold, then compares: PostgreSQL and ClickHouse checksums, and ClickHouse counts and
rollup sums read without FINAL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.fixtures.make_sessions import SESSIONS_DIR
from tests.integration.test_pg_projection_support import rows
from tests.integration.test_streams_support import (
    CLICKHOUSE_DATABASE,
    Reference,
    StreamsEnv,
    WorkerProcess,
    exact_answers,
    produce,
    read_topic,
    wait_caught_up,
)
from tests.unit.test_streams_support import (
    BAD_KINDS,
    EXPECTED_REASON,
    all_events,
    bad_body,
    bodies,
    renamed,
)
from turnlog.infra.stack.topics import ensure_topics
from turnlog.projections.clickhouse.store import AnalyticsStore
from turnlog.projections.postgres.migrate import migrate_postgres
from turnlog.schemas import DLQ_TOPIC, SESSIONS_TOPIC, TURNS_TOPIC, CloudEvent, decode, topic_specs
from turnlog.streams.dlq import decoded_headers
from turnlog.streams.locks import exclusive_projection_lock

pytestmark = pytest.mark.integration

EVENTS = all_events()


@pytest.fixture(scope="module")
def env(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StreamsEnv]:  # fmt: skip
    world = StreamsEnv(kafka_bootstrap, postgres_dsn, tmp_path_factory.mktemp("streams"))
    world.create()
    yield world
    world.drop()


@pytest.fixture(scope="module")
def worker(env: StreamsEnv) -> Iterator[WorkerProcess]:
    process = WorkerProcess(env)
    process.start()
    yield process
    code = process.stop()
    assert code == 0, process.tail()


@pytest.fixture(scope="module")
def reference(
    env: StreamsEnv, postgres_dsn: str, analytics_store: AnalyticsStore
) -> Iterator[Reference]:
    made = Reference(postgres_dsn, analytics_store)
    yield made
    made.drop()


def assert_same_state(env: StreamsEnv, reference: Reference) -> None:
    assert env.pg_checksum() == reference.pg_checksum()
    worker_ch = env.clickhouse()
    assert worker_ch_checksum(worker_ch) == reference.ch_checksum()
    assert exact_answers(worker_ch, CLICKHOUSE_DATABASE) == exact_answers(
        reference.store, reference.database
    )


def worker_ch_checksum(store: Any) -> dict[str, str]:
    from turnlog.projections.clickhouse import queries

    return queries.checksum(store, CLICKHOUSE_DATABASE)


def test_the_recorded_sessions_become_the_expected_read_models(
    env: StreamsEnv, worker: WorkerProcess, reference: Reference
) -> None:
    produce(env.bootstrap, env.events_topic, recorded_lines())
    reference.add(EVENTS)
    wait_caught_up(env, worker)
    with env.pg() as conn:
        sessions = {r["session_id"]: r for r in rows(conn, env.schema, "sessions")}
    assert {sid: (r["status"], r["event_count"], r["user_turns"], r["assistant_turns"],
                  r["interruptions"], r["tool_calls"], r["errors"])
            for sid, r in sessions.items()} == {
        "sess_tutor_happy": ("closed", 68, 4, 4, 1, 2, 0),
        "sess_tutor_failed": ("failed", 26, 2, 1, 0, 0, 2),
        "sess_support_handoff": ("closed", 46, 2, 2, 0, 2, 0),
    }  # fmt: skip
    with env.pg() as conn, reference_connection(reference) as ref:
        for table in ("sessions", "participants", "messages", "tool_calls", "transcriptions"):
            assert rows(conn, env.schema, table) == rows(ref, reference.schema, table), table
    assert_same_state(env, reference)


def recorded_lines() -> list[tuple[str, bytes]]:
    """The JSONL fixtures' lines as they are (the catalog's encoder wrote them)."""
    lines = []
    for path in sorted(SESSIONS_DIR.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                lines.append((json.loads(line)["sessionid"], line))
    assert len(lines) == len(EVENTS)
    return lines


def reference_connection(reference: Reference) -> Any:
    import psycopg

    return psycopg.connect(reference.dsn, autocommit=True)


def test_the_derived_topics_carry_the_turns_and_the_closed_sessions(
    env: StreamsEnv, worker: WorkerProcess
) -> None:
    turns = latest_by_subject(read_topic(env.bootstrap, env.topic(TURNS_TOPIC)))
    sessions = latest_by_subject(read_topic(env.bootstrap, env.topic(SESSIONS_TOPIC)))
    assert sorted(turns) == sorted([
        *(("sess_tutor_happy", f"turn_{n}") for n in (1, 2, 3, 4)),
        ("sess_tutor_failed", "turn_1"),
        *(("sess_support_handoff", f"turn_{n}") for n in (1, 2)),
    ])  # fmt: skip
    happy_2 = turns["sess_tutor_happy", "turn_2"]
    assert (happy_2.data.tool_call_count, happy_2.data.e2e_latency) == (2, 1.35)
    assert happy_2.data.user_text == "can you check my homework answers"
    assert turns["sess_tutor_happy", "turn_3"].data.interrupted is True
    assert {sid: e.data.status for (sid, _), e in sessions.items()} == {
        "sess_tutor_happy": "closed", "sess_tutor_failed": "failed",
        "sess_support_handoff": "closed",
    }  # fmt: skip
    failed = sessions["sess_tutor_failed", ""].data
    assert (failed.close_reason, failed.error_count, failed.turn_count) == ("error", 2, 1)


def latest_by_subject(records: list[Any]) -> dict[tuple[str, str], CloudEvent[Any]]:
    """Derived events by (session, turn id or ""), the latest of each by revision; keys
    are `<session id>/<turn id>` for turns, the session id for summaries."""
    latest: dict[tuple[str, str], CloudEvent[Any]] = {}
    for record in records:
        event = decode(record.value)
        turn_id = getattr(event.data, "turn_id", "")
        key = f"{event.sessionid}/{turn_id}" if turn_id else event.sessionid
        assert record.key == key.encode()
        known = latest.get((event.sessionid, turn_id))
        if known is None or known.data.revision <= event.data.revision:
            latest[event.sessionid, turn_id] = event
    return latest


def test_the_same_events_produced_twice_change_nothing(
    env: StreamsEnv, worker: WorkerProcess, reference: Reference
) -> None:
    before = env.pg_checksum()
    produce(env.bootstrap, env.events_topic, bodies(EVENTS))
    wait_caught_up(env, worker)
    assert env.pg_checksum() == before
    assert_same_state(env, reference)
    metrics = worker.metrics()
    assert 'turnlog_streams_duplicates_skipped_total{projection="postgres"} 140.0' in metrics
    assert_lag_gauge_reaches_zero(worker)


def assert_lag_gauge_reaches_zero(worker: WorkerProcess, *, timeout: float = 20) -> None:
    """The lag gauge (updated every few seconds) shows the 12 partitions of each
    projection, all done."""
    deadline = time.monotonic() + timeout
    while True:
        lag = [line for line in worker.metrics().splitlines()
               if line.startswith("turnlog_streams_consumer_lag{")]
        if len(lag) == 12 * 3 and all(line.endswith(" 0.0") for line in lag):
            return
        assert time.monotonic() < deadline, lag
        time.sleep(0.5)


def test_shuffled_sessions_give_the_same_state(
    env: StreamsEnv, worker: WorkerProcess, reference: Reference
) -> None:
    ordered = renamed(EVENTS, "~shuffled")
    by_session: dict[str, list[CloudEvent[Any]]] = {}
    for event in ordered:
        by_session.setdefault(event.sessionid, []).append(event)
    shuffled = []
    for events in by_session.values():
        events = events[:]
        random.Random(3).shuffle(events)
        shuffled.extend(events)
    produce(env.bootstrap, env.events_topic, bodies(shuffled))
    reference.add(ordered)
    wait_caught_up(env, worker)
    assert_same_state(env, reference)
    # the derived records converge too: the latest of each turn is the ordered one's
    turns = latest_by_subject(read_topic(env.bootstrap, env.topic(TURNS_TOPIC)))
    for (session_id, turn_id), event in turns.items():
        if session_id.endswith("~shuffled"):
            original = turns[session_id.removesuffix("~shuffled"), turn_id]
            assert event.data == original.data


def test_one_bad_record_in_a_hundred_goes_to_the_dlq_and_the_rest_is_projected(
    env: StreamsEnv, worker: WorkerProcess, reference: Reference
) -> None:
    good = [e for copy in range(4) for e in renamed(EVENTS, f"~mixed{copy}")]
    mixed: list[tuple[str, bytes]] = []
    bad: dict[int, str] = {}  # index in `mixed` -> kind
    kinds = iter(BAD_KINDS)
    for i, (key, body) in enumerate(bodies(good), start=1):
        mixed.append((key, body))
        if i % 99 == 0 and (kind := next(kinds, None)) is not None:
            bad[len(mixed)] = kind
            mixed.append((key, bad_body(kind, good[i - 1])))
    assert len(bad) == len(BAD_KINDS)
    positions = produce(env.bootstrap, env.events_topic, mixed)
    reference.add(good)
    wait_caught_up(env, worker)
    assert_same_state(env, reference)
    letters = read_topic(env.bootstrap, env.topic(DLQ_TOPIC))
    assert len(letters) == len(BAD_KINDS)
    by_source = {}
    for letter in letters:
        headers = decoded_headers(tuple(letter.headers))
        assert headers["turnlog-dlq-source-topic"] == env.events_topic
        source = (int(headers["turnlog-dlq-source-partition"]),
                  int(headers["turnlog-dlq-source-offset"]))
        by_source[source] = (headers, letter)
    for index, kind in bad.items():
        headers, letter = by_source[positions[index]]
        assert headers["turnlog-dlq-reason"] == EXPECTED_REASON[kind], kind
        assert headers["turnlog-dlq-exception"].endswith("Error")
        assert letter.value == mixed[index][1]  # byte for byte
        assert letter.key == mixed[index][0].encode()
    metrics = worker.metrics()
    # decode failures are dead-lettered once, by the PostgreSQL projection
    assert ('turnlog_streams_dead_lettered_total{projection="postgres",reason="malformed"} 2.0'
            in metrics)
    assert ('turnlog_streams_dead_lettered_total{projection="postgres",reason="too_large"} 1.0'
            in metrics)
    for reason in ("malformed", "too_large"):  # shown, at 0
        assert (f'turnlog_streams_dead_lettered_total{{projection="clickhouse",reason="{reason}"}}'
                ' 0.0' in metrics)


def test_the_exclusive_projection_lock_holds_batches_back(
    env: StreamsEnv, worker: WorkerProcess, reference: Reference
) -> None:
    """What an online rebuild relies on to swap schemas while no batch is in flight."""
    events = renamed(EVENTS, "~locked")
    with env.pg() as conn, exclusive_projection_lock(conn):
        produce(env.bootstrap, env.events_topic, bodies(events))
        time.sleep(2)
        with env.pg() as reader:
            row = reader.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE session_id LIKE '%%~locked'").format(
                    sql.Identifier(env.schema, "sessions"))).fetchone()
        assert row == (0,)
    reference.add(events)
    wait_caught_up(env, worker)
    assert_same_state(env, reference)


def test_a_worker_started_before_its_topics_waits_for_them(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    """`turnlog stack up` may still be creating the topics: the worker waits, says why."""
    early = StreamsEnv(kafka_bootstrap, postgres_dsn, tmp_path, projections=("postgres",))
    migrate_postgres(postgres_dsn, schema=early.schema)
    process = WorkerProcess(early)
    process.launch()
    try:
        deadline = time.monotonic() + 60
        while f"missing Kafka topics {early.events_topic}" not in process.tail(200):
            assert process.alive(), process.tail()
            assert time.monotonic() < deadline, process.tail()
            time.sleep(0.2)
        assert "turnlog stack up" in process.tail(200)
        asyncio.run(ensure_topics(kafka_bootstrap, topic_specs(early.prefix)))
        process.wait_ready(timeout=90)
    finally:
        assert process.stop() == 0, process.tail()
        early.drop()


def test_a_chdb_folder_owned_by_another_worker_is_waited_for(
    env: StreamsEnv, worker: WorkerProcess, tmp_path: Path
) -> None:
    second = dataclasses.replace(env, root=tmp_path, group=env.group + "-second",
                                 chdb_folder=env.chdb_dir, metrics_port=0,
                                 projections=("clickhouse",))  # fmt: skip
    waiting = WorkerProcess(second)
    waiting.launch()
    try:
        deadline = time.monotonic() + 60
        while not (said := [line for line in waiting.tail(200).splitlines()
                            if "waiting for" in line]):
            assert waiting.alive(), waiting.tail()
            assert time.monotonic() < deadline, waiting.tail()
            time.sleep(0.2)
        assert str(env.chdb_dir) in said[0]
        time.sleep(2)
        assert waiting.alive()
    finally:
        assert waiting.stop(timeout=30) == 0, waiting.tail()


def test_throughput_of_the_fixture_mix(env: StreamsEnv, worker: WorkerProcess) -> None:
    """Not a timed assertion: prints events/s into every projection, end to end (a batch
    is counted once the slowest projection has applied it)."""
    copies = 150
    load = [e for copy in range(copies) for e in renamed(EVENTS, f"~load{copy}")]
    before = consumed(worker)
    began = time.monotonic()
    produce(env.bootstrap, env.events_topic, bodies(load))
    produced = time.monotonic() - began
    while consumed(worker) < before + len(load):
        assert time.monotonic() - began < 300, worker.tail()
        time.sleep(0.05)
    elapsed = time.monotonic() - began
    wait_caught_up(env, worker, timeout=300)
    rate = len(load) / elapsed
    report = {"events": len(load), "seconds": round(elapsed, 2),
              "produce_seconds": round(produced, 2), "events_per_second": round(rate)}
    print(f"\nstreams worker throughput (PostgreSQL + ClickHouse, batch {env.batch_size}): "
          f"{json.dumps(report)}")


def consumed(worker: WorkerProcess) -> float:
    """Records every projection has consumed (the slowest one's count)."""
    counts = [float(line.split()[1]) for line in worker.metrics().splitlines()
              if line.startswith("turnlog_streams_records_consumed_total{")]
    return min(counts) if len(counts) == 3 else 0.0
