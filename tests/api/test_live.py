"""`GET /v1/sessions/{id}/live`: an event produced to the real Kafka during the request
arrives as a Server-Sent Event; other sessions' records on the same partition do not."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
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


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value, partition in records:
                await producer.send_and_wait(topic, value, key=key, partition=partition)
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
    assert json.loads(ready_message["data"])["session_id"] == "sess_live_1"
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
