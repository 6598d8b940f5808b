"""The key store off the publishing path: with the key store's PostgreSQL unreachable the
gateway goes on publishing, every personal field sealed; the keys projection waits, and
stores the keys once its database answers.

Integration: real Kafka and PostgreSQL, the real streams worker."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from psycopg import sql

from tests.conftest import unique
from tests.integration.test_privacy_erasure import Recorder, Subject, conversation
from tests.integration.test_streams_support import StreamsEnv, WorkerProcess, read_topic
from turnlog.infra.stack.stack import Stack
from turnlog.schemas import KEYS_TOPIC, decode
from turnlog.schemas.personal import personal_paths
from turnlog.schemas.sealing import WrappingKey, generate_kek, is_sealed

pytestmark = pytest.mark.integration


class Unreachable(StreamsEnv):
    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["TURNLOG_POSTGRES_DSN"] = "postgresql://turnlog:turnlog@127.0.0.1:1/turnlog"
        return env


def test_publishing_goes_on_sealed_while_the_key_store_is_down(
    stack: Stack, kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    env = StreamsEnv(kafka_bootstrap, postgres_dsn, tmp_path, projections=("keys",))
    env.create()
    down = Unreachable(kafka_bootstrap, postgres_dsn, tmp_path / "down", prefix=env.prefix,
                       schema=env.schema, group=env.group, projections=("keys",))  # fmt: skip
    _, public_pem = generate_kek()
    subject = Subject("dana@example.com", "marigold", "4111 1111 1111 1111", "room-k",
                      unique("sess-k-"))  # fmt: skip
    waiting = WorkerProcess(down)
    waiting.launch()
    try:

        async def record() -> None:
            async with Recorder(env, tmp_path / "spool", bootstrap=kafka_bootstrap,
                                kek=WrappingKey.from_pem(public_pem)) as online:  # fmt: skip
                await online.record(subject, conversation(subject), 1)

        asyncio.run(record())
        events = [decode(r.value) for r in read_topic(kafka_bootstrap, env.events_topic)]
        assert len(events) == len(conversation(subject))
        for event in events:
            data = json.loads(event.data.model_dump_json())
            assert "marigold" not in json.dumps(data)
            if personal_paths(type(event.data)):
                assert event.keyid == subject.session_id
                for path in (event.sealed or "").split():
                    value = data
                    for part in path.split("."):
                        value = value[int(part)] if isinstance(value, list) else value[part]
                    assert is_sealed(value), path
        assert read_topic(kafka_bootstrap, env.prefix + KEYS_TOPIC)  # the wrapped key is out
        time.sleep(3)
        assert waiting.alive(), waiting.tail()  # waiting for its database, not crashed
        assert "is consuming" not in waiting.log.read_text()
    finally:
        waiting.stop()
    worker = WorkerProcess(env)  # its database answers again
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            with env.pg() as conn:
                row = conn.execute(sql.SQL("SELECT key_id FROM {}").format(
                    sql.Identifier(env.schema, "data_keys"))).fetchall()  # fmt: skip
            if row == [(subject.session_id,)]:
                break
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.25)
    finally:
        worker.stop()
        env.drop()
