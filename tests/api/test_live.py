"""`GET /v1/sessions/{id}/live` on the real Kafka: the history after `Last-Event-ID` (or
`?after=`) then the live events, ids N+1..M with no gap and no duplicate, also for events
produced while the history is read; other sessions' records on the same partition do not
show; every viewer of a process shares one Kafka consumer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from tests.api.conftest import Keys, ServedApp
from tests.api.sessions_data import RECORDED, copy_session, write_postgres
from tests.conftest import PgSchema, Topics
from turnlog.schemas import CloudEvent, encode

pytestmark = pytest.mark.integration


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]], *, pause_s: float = 0
) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value, partition in records:
                await producer.send_and_wait(topic, value, key=key, partition=partition)
                if pause_s:
                    await asyncio.sleep(pause_s)
        finally:
            await producer.stop()

    asyncio.run(send())


def partition_of(key: str, partitions: int) -> int:
    every = list(range(partitions))
    partition: int = DefaultPartitioner()(key.encode(), every, every)
    return partition


def read_stream(url: str, headers: dict[str, str], ready: threading.Event,
                out: list[dict[str, Any]]) -> None:  # fmt: skip
    """Collect the SSE messages (as dicts of their fields) until the stream ends."""
    with httpx.Client(timeout=30) as http, http.stream("GET", url, headers=headers) as answer:
        out.append({"status": answer.status_code, "type": answer.headers["content-type"]})
        fields: dict[str, Any] = {}
        for line in answer.iter_lines():
            if line == "":
                if fields:
                    out.append(fields)
                    if fields.get("event") == "ready":
                        ready.set()
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value


def test_sse_delivers_events_produced_during_the_request(
    serve: Callable[..., ServedApp], keys: Keys, pg_schema: PgSchema, topics: Topics,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    events: list[CloudEvent[Any]] = copy_session(
        RECORDED["tutor_happy"], session_id="sess_live_1",
        start=RECORDED["tutor_happy"][0].time,
    )  # fmt: skip
    with pg_schema.connect() as conn:
        write_postgres(conn, pg_schema.name, events[:10])  # the session has begun
    app = serve(topic_prefix=topics.prefix, live_heartbeat_s=0.5)
    topic = topics.name("turnlog.events")
    spec = next(s for s in topics.specs if s.name == topic)
    partition = partition_of("sess_live_1", spec.partitions)

    ready, received = threading.Event(), list[dict[str, Any]]()
    reader = threading.Thread(
        target=read_stream,
        args=(f"{app.url}/v1/sessions/sess_live_1/live", keys.auth(keys.read), ready, received),
    )
    reader.start()
    assert ready.wait(15), received
    # Produced after the stream started: an earlier event must not show up.
    other = copy_session(RECORDED["tutor_failed"], session_id="sess_other",
                         start=events[0].time)  # fmt: skip
    produce(kafka_bootstrap, topic, [
        (b"sess_other", encode(other[0]), partition),  # same partition, another session
        *[(b"sess_live_1", encode(e), partition) for e in events[10:12]],
        (b"sess_live_1", b"not an event", partition),
        (b"sess_live_1", encode(events[-1]), partition),  # session.closed ends the stream
    ])  # fmt: skip
    reader.join(30)
    assert not reader.is_alive()

    head, ready_message, *messages = received
    assert head == {"status": 200, "type": "text/event-stream; charset=utf-8"}
    assert ready_message["event"] == "ready"
    assert json.loads(ready_message["data"]) == {
        "session_id": "sess_live_1", "after": 0, "history": 0,
    }  # fmt: skip
    expected = [*events[10:12], events[-1]]
    assert [m["id"] for m in messages] == [str(e.sequence) for e in expected]
    assert [m["event"] for m in messages] == [e.type for e in expected]
    assert [json.loads(m["data"])["id"] for m in messages] == [e.id for e in expected]
    assert messages[-1]["event"] == "turnlog.session.closed.v1"


def test_live_stream_needs_a_known_session_and_the_read_scope(
    serve: Callable[..., ServedApp], keys: Keys, topics: Topics
) -> None:
    app = serve(topic_prefix=topics.prefix)
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{app.url}/v1/sessions/nope/live",
                        headers=keys.auth(keys.read)).status_code == 404  # fmt: skip
        assert http.get(f"{app.url}/v1/sessions/nope/live",
                        headers=keys.auth(keys.tokens)).status_code == 403  # fmt: skip


def test_live_streams_are_capped(
    serve: Callable[..., ServedApp], keys: Keys, pg_schema: PgSchema, topics: Topics
) -> None:
    with pg_schema.connect() as conn:
        write_postgres(conn, pg_schema.name, copy_session(
            RECORDED["tutor_happy"], session_id="sess_live_2",
            start=RECORDED["tutor_happy"][0].time)[:5])  # fmt: skip
    app = serve(topic_prefix=topics.prefix, live_streams_max=1, live_heartbeat_s=0.2)
    url = f"{app.url}/v1/sessions/sess_live_2/live"
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", url, headers=keys.auth(keys.read)) as first,
    ):
        lines = first.iter_lines()  # kept: dropping the iterator closes the response
        assert next(lines) == "event: ready"
        second = http.get(url, headers=keys.auth(keys.read))
        assert (second.status_code, second.json()["dependency"]) == (503, "live-streams")
    # Closed: room for the next one.
    with httpx.Client(timeout=10) as http:
        for _ in range(50):
            with http.stream("GET", url, headers=keys.auth(keys.read)) as again:
                if again.status_code == 200:
                    break
            time.sleep(0.1)
        assert again.status_code == 200


def ids_of(received: list[dict[str, Any]]) -> list[int]:
    return [int(m["id"]) for m in received[1:] if "id" in m]


def test_history_then_live_with_no_gap_and_no_duplicate(
    serve: Callable[..., ServedApp], keys: Keys, pg_schema: PgSchema, topics: Topics,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    events = copy_session(RECORDED["tutor_happy"], session_id="sess_hist",
                          start=datetime.now(UTC) - timedelta(minutes=1))  # fmt: skip
    other = copy_session(RECORDED["tutor_failed"], session_id="sess_other2",
                         start=events[0].time)  # fmt: skip
    with pg_schema.connect() as conn:
        write_postgres(conn, pg_schema.name, events[:3])  # the session has begun
    topic = topics.name("turnlog.events")
    spec = next(s for s in topics.specs if s.name == topic)
    partition = partition_of("sess_hist", spec.partitions)

    def record(event: CloudEvent[Any]) -> tuple[bytes, bytes, int]:
        return (event.sessionid.encode(), encode(event), partition)

    # Already in the log: 1..30, a producer's retry of 12, another session, a non-event.
    produce(kafka_bootstrap, topic, [
        *[record(e) for e in events[:12]], record(events[11]), record(other[0]),
        (b"sess_hist", b"not an event", partition), *[record(e) for e in events[12:30]],
    ])  # fmt: skip
    app = serve(topic_prefix=topics.prefix, live_heartbeat_s=0.5)
    url = f"{app.url}/v1/sessions/sess_hist/live"
    # 31..50 are produced while the stream starts and reads the history.
    late = [record(e) for e in events[30:50]]
    during = threading.Thread(target=produce_slowly, args=(kafka_bootstrap, topic, late))
    ready, received = threading.Event(), list[dict[str, Any]]()
    reader = threading.Thread(target=read_stream, args=(
        url, {**keys.auth(keys.read), "Last-Event-ID": "8"}, ready, received))  # fmt: skip
    during.start()
    reader.start()
    assert ready.wait(20), received
    during.join(30)
    # The rest (with a retry of the last one sent) after the stream is live.
    produce(kafka_bootstrap, topic, [record(events[49]), *[record(e) for e in events[50:]]])
    reader.join(30)
    assert not reader.is_alive()

    assert ids_of(received) == list(range(9, len(events) + 1))
    ready_data = next(json.loads(m["data"]) for m in received[1:] if m.get("event") == "ready")
    assert ready_data["after"] == 8
    assert 30 - 8 <= ready_data["history"] <= 50 - 8
    assert received[-1]["event"] == "turnlog.session.closed.v1"
    hub = app.app.state.services.live_hub
    assert (hub.consumers_started, hub.viewers) == (1, 0)

    # A reconnection resumes after its Last-Event-ID (the whole rest from the history),
    # and `?after=` does the same for a first connection.
    for query, headers in (("", {"Last-Event-ID": "40"}), ("?after=60", {})):
        again, done = list[dict[str, Any]](), threading.Event()
        read_stream(url + query, {**keys.auth(keys.read), **headers}, done, again)
        first = 41 if headers else 61
        assert ids_of(again) == list(range(first, len(events) + 1))
        assert (
            json.loads(next(m["data"] for m in again[1:] if m.get("event") == "ready"))["history"]
            == len(events) - first + 1
        )
    assert hub.consumers_started == 1

    # `?history=batched`: the same history as JSON arrays, each message's id its last one.
    batched, done = list[dict[str, Any]](), threading.Event()
    read_stream(url + "?history=batched&after=20", keys.auth(keys.read), done, batched)
    history = [m for m in batched[1:] if m.get("event") == "history"]
    assert history
    sequences = [e["sequence"] for m in history for e in json.loads(m["data"])]
    assert sequences == list(range(21, len(events) + 1))
    assert [int(m["id"]) for m in history] == [
        json.loads(m["data"])[-1]["sequence"] for m in history
    ]
    assert not [m for m in batched[1:] if m.get("event", "").startswith("turnlog.")]
    assert hub.readers.started == 1  # one history reader, kept and reused by each stream


def produce_slowly(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    produce(bootstrap, topic, records, pause_s=0.02)


def test_viewers_share_one_consumer(
    serve: Callable[..., ServedApp], keys: Keys, pg_schema: PgSchema, topics: Topics,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    sessions = {
        sid: copy_session(RECORDED["tutor_failed"], session_id=sid, start=datetime.now(UTC))
        for sid in ("sess_a", "sess_b")
    }
    with pg_schema.connect() as conn:
        for events in sessions.values():
            write_postgres(conn, pg_schema.name, events[:2])
    app = serve(topic_prefix=topics.prefix, live_heartbeat_s=0.5)
    topic = topics.name("turnlog.events")
    spec = next(s for s in topics.specs if s.name == topic)
    streams: dict[str, tuple[threading.Thread, threading.Event, list[dict[str, Any]]]] = {}
    for sid in ("sess_a", "sess_a", "sess_b"):
        ready, received = threading.Event(), list[dict[str, Any]]()
        url = f"{app.url}/v1/sessions/{sid}/live"
        reader = threading.Thread(
            target=read_stream, args=(url, keys.auth(keys.read), ready, received)
        )
        reader.start()
        assert ready.wait(20)
        streams[f"{sid}-{len(streams)}"] = (reader, ready, received)
    hub = app.app.state.services.live_hub
    assert (hub.consumers_started, hub.viewers) == (1, 3)
    produce(kafka_bootstrap, topic, [
        (sid.encode(), encode(e), partition_of(sid, spec.partitions))
        for sid, events in sessions.items() for e in events
    ])  # fmt: skip
    for reader, _, received in streams.values():
        reader.join(30)
        assert not reader.is_alive()
        assert ids_of(received) == list(range(1, 27))
    assert (hub.consumers_started, hub.viewers) == (1, 0)
