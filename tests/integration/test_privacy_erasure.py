"""Crypto-shredding end to end: sessions recorded through the gateway's sealing stage and
publishers (spooled while Kafka is unreachable), projected by the real streams worker,
one participant erased while the worker is down; then every store is searched byte for
byte for what the erased participant said, and a rebuild from offset 0 must equal live.

Integration: real Kafka, PostgreSQL and chDB (the worker's own folder)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from psycopg import sql

from tests.conftest import unique
from tests.integration.test_streams_support import (
    StreamsEnv,
    WorkerProcess,
    committed_lag,
    running_worker,
)
from tests.store_scan import postgres_checkpoint, scan
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings
from turnlog.agent_gateway.redaction import redaction_from_env
from turnlog.agent_gateway.sealing import SealingSink
from turnlog.api.erasure import erase_in_postgres, finish, sessions_of_identity
from turnlog.api.privacy import Opener
from turnlog.infra.stack.config import REPO_ROOT
from turnlog.infra.stack.stack import Stack
from turnlog.schemas import (
    KEYS_TOPIC,
    ConversationItemAdded,
    EventPayload,
    ParticipantJoined,
    SessionClosed,
    SessionStarted,
    ToolCall,
    ToolsExecuted,
    UserTranscribed,
    agent_source,
    trusted_event,
)
from turnlog.schemas.sealing import UnwrappingKey, WrappingKey, generate_kek

pytestmark = pytest.mark.integration

# a new seed per run (the needles must not be in an earlier run's topics); printed, and
# PRIVACY_SEED repeats a run
SEED = int(os.environ.get("PRIVACY_SEED") or time.time_ns() % 10**9)
print(f"test_privacy_erasure seed={SEED}")


def luhn_card(rng: random.Random) -> str:
    """A random 16-digit card number that passes the Luhn check (so redaction would take it)."""
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    text = "".join(map(str, digits))
    return " ".join(text[i : i + 4] for i in range(0, 16, 4))


@dataclass
class Subject:
    identity: str
    phrase: str
    card: str
    room: str
    session_id: str


class Recorder:
    """The gateway's path from a hook's event to Kafka: the sealing stage and the two
    publishers (events, keys) with their spool."""

    def __init__(self, env: StreamsEnv, spool: Path, *, bootstrap: str, kek: WrappingKey,
                 redact: str = "") -> None:  # fmt: skip
        registry = CollectorRegistry()

        def publisher(topic: str, folder: Path) -> Publisher:
            return Publisher(PublisherSettings(bootstrap_servers=bootstrap, topic=topic,
                                               spool_dir=folder, connect_timeout=2.0),
                             registry=registry)  # fmt: skip

        self.events = publisher(env.events_topic, spool)
        self.keys = publisher(env.prefix + KEYS_TOPIC, spool / "keys")
        self.sink = SealingSink(events=self.events, keys=self.keys, wrapping=kek,
                                redactor=redaction_from_env(redact))  # fmt: skip

    async def record(self, subject: Subject, payloads: list[EventPayload], first: int) -> int:
        for i, payload in enumerate(payloads):
            self.sink.publish(trusted_event(
                payload, session_id=subject.session_id, sequence=first + i,
                source=agent_source("privacy", "w1"), subject=subject.room,
            ))  # fmt: skip
        return first + len(payloads)

    async def __aenter__(self) -> Recorder:
        await asyncio.gather(self.events.start(), self.keys.start())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.events.aclose(timeout=10)
        await self.keys.aclose(timeout=10)


def conversation(subject: Subject) -> list[EventPayload]:
    """A session that says the subject's phrase and card number in every personal field."""
    said = f"my code word is {subject.phrase} and my card is {subject.card}"
    return [
        SessionStarted(job_id="AJ", agent_name="privacy", worker_id="w1",
                       participant_identity=subject.identity),
        ParticipantJoined(identity=subject.identity, sid="PA_1", name=subject.phrase,
                          kind="standard"),
        UserTranscribed(transcript=said, is_final=True, turn_id="turn-1"),
        ConversationItemAdded(item_id="i1", role="user", text=said, turn_id="turn-1"),
        ToolsExecuted(turn_id="turn-1", calls=(ToolCall(
            call_id="c1", name="charge", arguments=f'{{"card": "{subject.card}"}}',
            output=f"charged {subject.phrase}", is_error=False),)),
        ConversationItemAdded(item_id="i2", role="assistant", text=f"noted, {subject.phrase}",
                              turn_id="turn-1"),
    ]  # fmt: skip


@dataclass
class World:
    env: StreamsEnv
    worker: WorkerProcess
    alice: list[Subject]
    bob: Subject
    late_phrase: str
    identities: tuple[str, ...]
    spool: Path
    unwrapping: UnwrappingKey
    erasure: Any


@pytest.fixture(scope="module")
def world(stack: Stack, kafka_bootstrap: str, postgres_dsn: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:  # fmt: skip
    rng = random.Random(SEED)
    word = lambda: f"{rng.choice(['zebra', 'quartz', 'lantern', 'velvet'])}{rng.randrange(10**9)}"  # noqa: E731
    root = tmp_path_factory.mktemp("privacy")
    env = StreamsEnv(kafka_bootstrap, postgres_dsn, root,
                     projections=("postgres", "clickhouse", "derived", "keys"))  # fmt: skip
    env.create()
    private_pem, public_pem = generate_kek()
    kek = WrappingKey.from_pem(public_pem)
    alice_id, bob_id = f"alice-{word()}", f"bob-{word()}"
    alice = [Subject(alice_id, word(), luhn_card(rng), f"room-{word()}", unique("sess-a-"))
             for _ in range(2)]  # fmt: skip
    bob = Subject(bob_id, word(), luhn_card(rng), f"room-{word()}", unique("sess-b-"))
    spool = root / "spool"
    worker = WorkerProcess(env)

    async def record_all() -> None:
        # Kafka unreachable: the first session waits in the spool, sealed
        async with Recorder(env, spool, bootstrap="127.0.0.1:1", kek=kek) as offline:
            await offline.record(alice[0], conversation(alice[0]), 1)
        assert spool_bytes(spool) > 0
        assert not scan([alice[0].phrase, alice[0].card], files=[spool])  # sealed on disk
        async with Recorder(env, spool, bootstrap=kafka_bootstrap, kek=kek) as online:
            await online.record(alice[1], [*conversation(alice[1]), SessionClosed(
                reason="user_initiated")], 1)  # fmt: skip
        # Bob's deployment redacts before sealing: his card number never leaves the agent
        async with Recorder(env, root / "spool-b", bootstrap=kafka_bootstrap, kek=kek,
                            redact="on") as redacting:  # fmt: skip
            await redacting.record(bob, [*conversation(bob), SessionClosed(
                reason="user_initiated")], 1)  # fmt: skip

    asyncio.run(record_all())
    late, carol = word(), f"carol-{word()}"
    with running_worker(env) as running:
        wait_events(env, running)
        wait_keys(env, 3, running)
    # the worker is down: the erasure happens, then late events of an erased session
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        sessions = sessions_of_identity(conn, alice_id, schema=env.schema)
        erasure = erase_in_postgres(conn, schema=env.schema, scope="participant",
                                    session_ids=sessions, requested_by="test",
                                    reason="ticket 42", identity=alice_id)  # fmt: skip

    async def kafka_part() -> None:
        async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                return fn(conn, *args, **kwargs)

        await finish(erasure, call, schema=env.schema, bootstrap=kafka_bootstrap,
                     topic_prefix=env.prefix)  # fmt: skip

    asyncio.run(kafka_part())

    async def late_events() -> None:
        async with Recorder(env, spool, bootstrap=kafka_bootstrap, kek=kek) as online:
            # a new key record for the same session (another participant) and more speech
            await online.record(alice[0], [
                ParticipantJoined(identity=carol, sid="PA_2", kind="standard"),
                UserTranscribed(transcript=f"one more thing: {late}", is_final=True,
                                turn_id="turn-2"),
                SessionClosed(reason="user_initiated"),
            ], 7)  # fmt: skip

    asyncio.run(late_events())
    worker.start()  # the worker returns: the erasure must hold
    wait_events(env, worker)
    wait_keys(env, 1, worker, group_lag=True)
    try:
        yield World(env, worker, alice, bob, late, (alice_id, carol), spool,
                    UnwrappingKey.from_pem(private_pem), erasure)  # fmt: skip
    finally:
        worker.stop()
        env.drop()


def wait_events(env: StreamsEnv, worker: WorkerProcess) -> None:
    """Until the projections of the events topic have committed all of it (the keys
    projection reads its own topic: `wait_keys`)."""
    deadline = time.monotonic() + 120
    groups = [g for g in env.groups() if not g.endswith("-keys")]
    while (lag := sum(committed_lag(env.bootstrap, g, env.events_topic) for g in groups)) > 0:
        if time.monotonic() > deadline or not worker.alive():
            raise AssertionError(f"still {lag} behind:\n{worker.tail()}")
        time.sleep(0.25)


def formatted(endpoint: Any, query: str) -> str:
    """What `FORMAT JSONEachRow` / `FORMAT TSVRaw` would print, through the worker's
    query endpoint (it answers typed rows; chDB's folder is the worker's)."""
    text, _, fmt = query.rpartition(" FORMAT ")
    # the endpoint is read-only: no SETTINGS (our tables have no MATERIALIZED columns)
    result = endpoint.select(text.split(" SETTINGS ")[0])
    if fmt == "JSONEachRow":
        return "\n".join(json.dumps(dict(zip(result.columns, row, strict=True)), default=str)
                         for row in result.rows)  # fmt: skip
    return "\n".join("\t".join(map(str, row)) for row in result.rows)


def spool_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def wait_keys(env: StreamsEnv, expected: int, worker: WorkerProcess, *,
              group_lag: bool = False) -> None:  # fmt: skip
    """Until the key store holds `expected` keys and (with `group_lag`) the keys
    projection has consumed its whole topic."""
    deadline = time.monotonic() + 90
    while True:
        with env.pg() as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(env.schema, "data_keys"))).fetchone()  # fmt: skip
        lag = committed_lag(env.bootstrap, f"{env.group}-keys", env.prefix + KEYS_TOPIC)
        if row is not None and row[0] == expected and (not group_lag or lag == 0):
            return
        if time.monotonic() > deadline or not worker.alive():
            raise AssertionError(f"key store: {row}, lag {lag}\n{worker.tail()}")
        time.sleep(0.25)


def rows(env: StreamsEnv, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with env.pg() as conn:
        return conn.execute(sql.SQL(query).format(schema=sql.Identifier(env.schema)),
                            args).fetchall()  # fmt: skip


def test_the_erasure_destroyed_the_keys_and_purged_the_read_models(world: World) -> None:
    erased = sorted(s.session_id for s in world.alice)
    assert world.erasure.session_ids == erased
    assert rows(world.env, "SELECT key_id FROM {schema}.data_keys") == [(world.bob.session_id,)]
    assert rows(world.env, "SELECT count(*) FROM {schema}.key_subjects WHERE key_id <> %s",
                world.bob.session_id) == [(0,)]  # fmt: skip
    for table in ("messages", "transcriptions", "tool_calls", "participants"):
        left = rows(world.env, f"SELECT session_id, count(*) FROM {{schema}}.{table} "
                    "GROUP BY 1 ORDER BY 1")  # fmt: skip
        assert left == [(world.bob.session_id, left[0][1])], table  # only Bob's remain
    sessions = rows(world.env, "SELECT session_id, participants, linked_identity, event_count "
                    "FROM {schema}.sessions ORDER BY session_id")  # fmt: skip
    by_id = {r[0]: r for r in sessions}
    for session_id in erased:
        assert by_id[session_id][1] == []
        assert by_id[session_id][2] is None
    # the late events were projected (counted) but left no personal row
    assert by_id[world.alice[0].session_id][3] == 9


def test_bob_reads_back_and_alice_reads_erased(world: World) -> None:
    opener = Opener(world.unwrapping, schema=world.env.schema)
    with world.env.pg() as conn:
        keys = opener.keys(conn, [world.bob.session_id, world.alice[0].session_id])
        query = sql.SQL("SELECT text FROM {} WHERE session_id = %s ORDER BY sequence")
        table = sql.Identifier(world.env.schema, "messages")
        texts = conn.execute(query.format(table), (world.bob.session_id,)).fetchall()
    assert keys[world.alice[0].session_id] is None
    bob_said = [opener.open(t, keys[world.bob.session_id]) for (t,) in texts]
    assert bob_said[0] == f"my code word is {world.bob.phrase} and my card is [card]"
    assert opener.open(texts[0][0], None) == "[erased]"


def test_no_store_holds_what_the_erased_participant_said(world: World, stack: Stack,
                                                         postgres_dsn: str) -> None:  # fmt: skip
    s = stack.settings
    postgres_checkpoint(f"host={stack.postgres.socket_dir} port={s.postgres_port} "
                        "user=postgres dbname=postgres")  # fmt: skip
    endpoint = world.env.clickhouse()
    alice = world.alice
    needles = (
        [a.phrase for a in alice]
        + [a.card for a in alice]
        + [a.card.replace(" ", "") for a in alice]
        + [world.late_phrase, world.bob.card, *world.identities]
    )
    controls = [alice[0].room, alice[1].room, world.bob.room]  # not personal: must be found
    findings = scan(
        [*needles, *controls], kafka_log_dirs=[stack.kafka.data_dir], kafka_libs=stack.kafka.libs,
        postgres_data_dir=stack.postgres.data_dir, postgres_dsn=postgres_dsn,
        clickhouse_query=lambda q: formatted(endpoint, q),
        files=[world.spool, world.env.root / "worker.log"],
    )  # fmt: skip
    found = lambda text: [f for f in findings if f.needle == text.encode()]  # noqa: E731
    for needle in needles:
        assert found(needle) == [], (needle, found(needle))
    for room in controls:  # the search does see the log, PostgreSQL and ClickHouse
        stores = {f.store for f in found(room)}
        assert {"kafka-dump", "postgres"} <= stores or {
            "kafka-decompressed",
            "postgres",
        } <= stores, stores
        assert "clickhouse" in stores, stores
    print("controls found in", sorted({(f.store) for r in controls for f in found(r)}))


def test_a_rebuild_after_the_erasure_equals_live(world: World) -> None:
    world.worker.stop()  # a rebuild with ClickHouse needs the chDB folder
    try:
        result = subprocess.run(
            [sys.executable, "-m", "turnlog.streams", "rebuild", "--dry-run", "--target", "both",
             "--settle", "0"],
            cwd=REPO_ROOT, env=world.env.environment(), capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
    finally:
        world.worker.start()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "equal" in (result.stdout + result.stderr).lower()
