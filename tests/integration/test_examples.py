"""Each example agent, as a user runs it (`python examples/<name>/agent.py dev`), through the
real LiveKit server and Kafka: a client joins, types to the agent, leaves; the session's
events are in the log, contiguous, in turns, with the tool calls and handoffs the example
makes, `session.closed` last, and the LiveKit server reports the job as a success.

The examples use the real `livekit-plugins-openai` objects; their HTTP goes to a small
OpenAI-compatible server of the test (`tests/fixtures/fake_openai.py`), so no key and no
network are needed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from livekit import api, rtc

from tests.conftest import Topics, unique
from tests.fixtures.fake_openai import FakeOpenAI, fake_openai
from tests.livekit_jobs import job_end_status
from turnlog.infra.stack.stack import Stack
from turnlog.schemas import EVENTS_TOPIC, KEYS_TOPIC, CloudEvent, decode
from turnlog.schemas.codec import with_sealing
from turnlog.schemas.sealing import DataKey, UnwrappingKey, generate_kek, open_value

pytestmark = [
    pytest.mark.integration,
    # the dev server's well-known secret is 6 bytes; PyJWT warns about any HMAC key under 32
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

REPO = Path(__file__).resolve().parents[2]
REGISTERED = "registered worker"


def t(name: str) -> str:
    return f"turnlog.{name}.v1"


@dataclass
class ExampleWorker:
    """An example agent's worker process, registered for explicit dispatch under `name`."""

    process: subprocess.Popen[bytes]
    log: Path
    name: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


KEK_PRIVATE, KEK_PUBLIC = generate_kek()
"""The examples seal with this KEK's public half; the test opens with the private one."""


def start_worker(example: str, *, stack: Stack, topics: Topics, openai_url: str,
                 tmp_path: Path) -> ExampleWorker:  # fmt: skip
    s = stack.settings
    (tmp_path / "kek.pub.pem").write_bytes(KEK_PUBLIC)
    name = unique(f"{example}-")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TURNLOG_", "LIVEKIT_"))},
        "LIVEKIT_URL": s.livekit_url,
        "LIVEKIT_API_KEY": s.livekit_api_key,
        "LIVEKIT_API_SECRET": s.livekit_api_secret,
        "LIVEKIT_AGENT_NAME": name,  # livekit-agents' own override: explicit dispatch
        "OPENAI_API_KEY": "sk-test-turnlog-0123456789",
        "OPENAI_BASE_URL": openai_url,
        "TURNLOG_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "TURNLOG_TOPIC_PREFIX": topics.prefix,
        "TURNLOG_SPOOL_DIR": str(tmp_path / "spool"),
        "TURNLOG_KEK_PUBLIC_KEY": str(tmp_path / "kek.pub.pem"),
    }
    log = tmp_path / f"{example}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "examples" / example / "agent.py"), "dev",
             "--no-reload", "--log-level", "info"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = ExampleWorker(process, log, name)
    deadline = time.monotonic() + 60
    while REGISTERED not in worker.text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            raise AssertionError(f"{example} did not register:\n{worker.text()[-3000:]}")
        time.sleep(0.1)
    return worker


class Conversation:
    """A typing user in a room where the example agent is dispatched, and the room's events
    read back from Kafka."""

    def __init__(self, stack: Stack, topic: str, agent_name: str) -> None:
        self.stack = stack
        self.topic = topic
        self.agent_name = agent_name
        self.room_name = unique("room-")
        self.sealed: list[CloudEvent[Any]] = []
        """The room's events as recorded: personal fields sealed."""
        self.keys: dict[str, DataKey] = {}
        self._unwrapping = UnwrappingKey.from_pem(KEK_PRIVATE)

    @property
    def events(self) -> list[CloudEvent[Any]]:
        """The room's events, opened with the keys read from the keys topic so far."""
        return [self._opened(e) for e in self.sealed]

    def _opened(self, event: CloudEvent[Any]) -> CloudEvent[Any]:
        key = self.keys.get(event.keyid or "")
        if event.keyid is None or key is None:
            return event
        data = open_value(event.data.model_dump(mode="json"), key)
        return with_sealing(
            event, data=type(event.data).model_validate(data), keyid=event.keyid,
            sealed=event.sealed, redactions=event.redactions,
        )  # fmt: skip

    async def join(self) -> None:
        """Made on the test's loop: the room and the consumer bind to it."""
        self.room = rtc.Room()
        self.consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.stack.settings.kafka_bootstrap,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        s = self.stack.settings
        token = (
            api.AccessToken(s.livekit_api_key, s.livekit_api_secret)
            .with_identity("caller")
            .with_grants(api.VideoGrants(room_join=True, room=self.room_name))
            .with_room_config(api.RoomConfiguration(
                agents=[api.RoomAgentDispatch(agent_name=self.agent_name)]))
            .to_jwt()
        )  # fmt: skip
        self.key_consumer = AIOKafkaConsumer(
            self.topic.replace(EVENTS_TOPIC, KEYS_TOPIC), bootstrap_servers=s.kafka_bootstrap,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        await self.consumer.start()
        await self.key_consumer.start()
        await self.room.connect(s.livekit_url, token)
        await self.wait_for(lambda e: e.type == t("agent.state_changed")
                            and e.data.new_state == "listening")  # fmt: skip

    async def say(self, text: str, *, then: str | Any) -> None:
        """Type `text` on `lk.chat`, then wait until the agent answered with `then` in it
        (or, given a predicate, until an event satisfies it)."""
        await self.room.local_participant.send_text(text, topic="lk.chat")
        if callable(then):
            await self.wait_for(then)
            return
        await self.wait_for(
            lambda e: (
                e.type == t("conversation.item_added")
                and e.data.role == "assistant"
                and then in (e.data.text or "")
            )
        )

    async def leave(self) -> None:
        await self.room.disconnect()
        await self.wait_for(lambda e: e.type == t("session.closed"), within=60)
        extra = await self.consumer.getmany(timeout_ms=1000)  # anything late would be here
        self._keep(r for rs in extra.values() for r in rs)
        await self._read_keys()
        await self.consumer.stop()
        await self.key_consumer.stop()

    async def close(self) -> None:
        """Leave the room and stop the consumer, whatever state they are in."""
        room, consumer = getattr(self, "room", None), getattr(self, "consumer", None)
        if room is not None and room.isconnected():
            await room.disconnect()
        if consumer is not None:
            await consumer.stop()  # idempotent
        key_consumer = getattr(self, "key_consumer", None)
        if key_consumer is not None:
            await key_consumer.stop()

    async def wait_for(self, found: Any, *, within: float = 30) -> CloudEvent[Any]:
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if found(event):
                        return event
                batches = await self.consumer.getmany(timeout_ms=200)
                self._keep(r for rs in batches.values() for r in rs)
                await self._read_keys()

    async def _read_keys(self) -> None:
        batches = await self.key_consumer.getmany(timeout_ms=10)
        for record in (r for rs in batches.values() for r in rs):
            if record.value is not None:
                issued = decode(record.value).data
                self.keys[issued.key_id] = self._unwrapping.unwrap(
                    issued.key_id, base64.b64decode(issued.wrapped_key)
                )

    def _keep(self, records: Any) -> None:
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            event = decode(record.value)
            if event.subject == self.room_name:
                self.sealed.append(event)

    def job_status(self) -> str:
        """How the LiveKit server ended this room's agent job."""
        return job_end_status(self.stack.settings.logs_dir / "livekit.log",
                              self.events[0].data.job_id)  # fmt: skip


def check_session_log(events: list[CloudEvent[Any]]) -> CloudEvent[Any]:
    """One session, contiguous from 1, `session.started` first and `session.closed` last
    once, every item in a turn; returns `session.started`."""
    assert events, "no event of the room reached Kafka"
    assert len({e.sessionid for e in events}) == 1
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    types = [e.type for e in events]
    assert types[0] == t("session.started")
    assert types[-1] == t("session.closed")
    assert types.count(t("session.closed")) == 1
    items = [e for e in events if e.type == t("conversation.item_added")]
    assert items
    assert all(e.data.turn_id for e in items)
    return events[0]


@dataclass
class Outcome:
    events: list[CloudEvent[Any]]
    job_status: str
    exit_code: int
    log: str


def converse(example: str, lines: list[tuple[str, Any]], *, stack: Stack, topics: Topics,
             openai_url: str, tmp_path: Path) -> Outcome:  # fmt: skip
    """Start the example's worker, type each `(text, expected answer)`, leave, stop."""
    worker = start_worker(example, stack=stack, topics=topics, openai_url=openai_url,
                          tmp_path=tmp_path)  # fmt: skip
    conversation = Conversation(stack, topics.name(EVENTS_TOPIC), worker.name)

    async def talk() -> None:
        try:
            await conversation.join()
            for text, answer in lines:
                await conversation.say(text, then=answer)
            await conversation.leave()
        finally:  # also when a step timed out: nothing of this loop outlives it
            await conversation.close()

    try:
        try:
            asyncio.run(talk())
        except TimeoutError:
            seen = [(e.sequence, e.type.removeprefix("turnlog.")) for e in conversation.events]
            pytest.fail(f"{example}: a step timed out; events seen {seen[-12:]}; worker log:\n"
                        f"{worker.text()[-3000:]}")  # fmt: skip
        status = conversation.job_status()
    finally:
        code = worker.stop()
    check_session_log(conversation.events)
    assert status == "JS_SUCCESS", worker.text()[-3000:]
    assert code == 0, worker.text()[-3000:]
    return Outcome(conversation.events, status, code, worker.text())


def test_the_minimal_example_is_recorded_whole(
    stack: Stack, topics: Topics, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    outcome = converse("minimal", [("what is the weather like", "You said: what is the weather")],
                       stack=stack, topics=topics, openai_url=openai_server.url,
                       tmp_path=tmp_path)  # fmt: skip
    events = outcome.events
    started = events[0]

    host = openai_server.url.split("/")[2]  # the plugin names its API host as the provider
    assert (started.data.llm.provider, started.data.llm.model) == (host, "gpt-4.1-mini")
    assert started.data.tts.provider == host
    assert started.data.stt.provider == host
    assert started.data.agent_name.startswith("minimal-")
    assert [e.data.text for e in events if e.type == t("conversation.item_added")
            and e.data.role == "user"] == ["what is the weather like"]  # fmt: skip
    assert "sk-test-turnlog" not in outcome.log


def test_the_front_desk_hands_off_to_billing_and_its_tools_are_recorded(
    stack: Stack, topics: Topics, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    # The handoff, not the old agent's spoken confirmation: livekit-agents may drop that
    # reply when the new agent takes over first ("no activity context found"), a race of
    # the framework's, not of the recording.
    handed_over = lambda e: (  # noqa: E731
        e.type == t("agent.handoff") and e.data.new_agent_id == "billing"
    )
    events = converse(
        "front_desk",
        [
            ("Please transfer me to billing", handed_over),
            ("What is the status of invoice 1042", "was paid"),
        ],
        stack=stack,
        topics=topics,
        openai_url=openai_server.url,
        tmp_path=tmp_path,
    ).events

    handoffs = [e.data for e in events if e.type == t("agent.handoff")]
    assert [h.new_agent_id for h in handoffs][-2:] == ["front_desk", "billing"]
    tools = [call for e in events if e.type == t("tools.executed") for call in e.data.calls]
    assert [c.name for c in tools] == ["transfer_to_billing", "lookup_invoice"]
    assert '"1042"' in tools[1].arguments
    assert "was paid" in (tools[1].output or "")
    executed = [e for e in events if e.type == t("tools.executed")]
    assert all(e.data.turn_id for e in executed)
