"""AgentSessions recorded to the real broker: the offline tutor (text input, no room), the
recorder, the real Publisher on this test's own topic; then the topic read back."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from livekit.agents import AgentSession
from prometheus_client import CollectorRegistry

from examples.tutor.agent import TutorAgent
from tests.conftest import Topics
from turnlog.agent_gateway.hooks import (
    JobInfo,
    RecorderIdentity,
    SessionRecorder,
    map_session_started,
)
from turnlog.agent_gateway.metrics import GatewayMetrics
from turnlog.agent_gateway.providers import ProviderSettings, build_providers
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings, PublisherStats
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, ConversationItemAdded, ToolsExecuted, decode

pytestmark = pytest.mark.integration

AGENT_NAME = "turnlog-tutor"
WORKER_ID = "AW_test"


def t(name: str) -> str:
    return f"turnlog.{name}.v1"


GREETING = [  # turn-1: the tutor's on_enter reply, agent-initiated
    t("speech.created"),
    t("agent.state_changed"),  # initializing -> listening
    t("agent.state_changed"),  # listening -> thinking
    t("agent.state_changed"),  # thinking -> speaking, with the first words
    t("metrics.collected"),  # LLM, once the reply is complete
    t("usage.updated"),
    t("conversation.item_added"),  # the greeting
    t("agent.state_changed"),  # speaking -> listening
]
ANSWER = [  # a text turn the tutor answers from its facts
    t("speech.created"),
    t("conversation.item_added"),  # the user's text
    t("agent.state_changed"),  # thinking
    t("agent.state_changed"),  # speaking
    t("metrics.collected"),
    t("usage.updated"),
    t("conversation.item_added"),  # the answer
    t("agent.state_changed"),
]
TOOL_ANSWER = [  # a text turn answered through a function tool
    t("speech.created"),
    t("conversation.item_added"),
    t("agent.state_changed"),  # thinking
    t("metrics.collected"),  # the LLM asks for the tool
    t("usage.updated"),
    t("tools.execution_updated"),  # call started
    t("tools.execution_updated"),  # call ended
    t("tools.executed"),
    t("agent.state_changed"),  # speaking
    t("metrics.collected"),  # the LLM answers with the tool's output
    t("usage.updated"),
    t("conversation.item_added"),
    t("agent.state_changed"),  # listening
]

LESSONS = {
    "algebra-1": (
        ["what is the capital of France", "give me an example of photosynthesis"],
        [ANSWER, TOOL_ANSWER],
    ),
    "physics-2": (
        [
            "check my understanding of gravity: I think heavier things pull harder",
            "give me an example of gravity",
            "thank you",
        ],
        [TOOL_ANSWER, TOOL_ANSWER, ANSWER],
    ),
}


@dataclass
class Recorded:
    room: str
    session_id: str
    expected: list[str]
    user_inputs: list[str]


async def run_lesson(publisher: Publisher, room: str, inputs: list[str]) -> str:
    providers = build_providers(ProviderSettings(stt="offline", llm="offline", tts="offline"))
    session: AgentSession[Any] = AgentSession(
        stt=providers.stt, llm=providers.llm, tts=providers.tts, vad=providers.vad
    )
    agent = TutorAgent()
    recorder = SessionRecorder(
        sink=publisher,
        identity=RecorderIdentity(agent_name=AGENT_NAME, worker_id=WORKER_ID, room_name=room),
        metrics=GatewayMetrics(CollectorRegistry()),
    )
    described = providers.describe()
    job = JobInfo(job_id=f"AJ_{room}", agent_name=AGENT_NAME, worker_id=WORKER_ID,
                  room_name=room)
    recorder.start(
        session,
        started=map_session_started(
            job, agent_id=agent.id, stt=described.stt, llm=described.llm, tts=described.tts
        ),
    )
    try:
        await session.start(agent, capture_run=True)  # returns once the greeting is done
        for text in inputs:
            await session.run(user_input=text)
    finally:
        await session.aclose()
        await providers.aclose()
    return recorder.session_id


async def record_lessons(
    bootstrap: str, topic: str, spool_dir: Path
) -> tuple[list[Recorded], PublisherStats]:
    settings = PublisherSettings(bootstrap_servers=bootstrap, topic=topic, spool_dir=spool_dir)
    publisher = Publisher(settings, registry=CollectorRegistry())
    await publisher.start()
    try:
        session_ids = await asyncio.gather(
            *(run_lesson(publisher, room, inputs) for room, (inputs, _) in LESSONS.items())
        )
    finally:
        await publisher.aclose(timeout=15.0)
    recorded = []
    for (room, (inputs, turns)), session_id in zip(LESSONS.items(), session_ids, strict=True):
        expected = [t("session.started"), t("agent.handoff"), *GREETING]
        for turn in turns:
            expected += turn
        expected.append(t("session.closed"))
        recorded.append(Recorded(room, session_id, expected, inputs))
    return recorded, publisher.stats()


async def consume(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return records


def by_session(records: list[Any]) -> dict[str, list[tuple[Any, CloudEvent[Any]]]]:
    grouped: dict[str, list[tuple[Any, CloudEvent[Any]]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode(record.value)
        grouped[event.sessionid].append((record, event))
    return grouped


def test_tutor_sessions_land_on_the_log_in_order(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    topic = topics.name(EVENTS_TOPIC)

    lessons, stats = asyncio.run(record_lessons(kafka_bootstrap, topic, tmp_path / "spool"))
    total = sum(len(lesson.expected) for lesson in lessons)
    grouped = by_session(asyncio.run(consume(kafka_bootstrap, topic, total)))

    assert (stats.dropped, stats.failed, stats.spooled) == (0, 0, 0)
    assert stats.sent == total
    assert set(grouped) == {lesson.session_id for lesson in lessons}
    for lesson in lessons:
        received = grouped[lesson.session_id]
        events = [event for _, event in received]
        assert [e.type for e in events] == lesson.expected, lesson.room
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert len({record.partition for record, _ in received}) == 1
        assert {record.key for record, _ in received} == {lesson.session_id.encode()}
        assert {(e.subject, e.source) for e in events} == {
            (lesson.room, f"/agents/{AGENT_NAME}/{WORKER_ID}")
        }
        check_turns(events, lesson)


def check_turns(events: list[CloudEvent[Any]], lesson: Recorded) -> None:
    """Each user input and everything the tutor did about it share one turn id; the
    greeting has its own; session-scoped events have none."""
    turns: dict[str | None, list[CloudEvent[Any]]] = defaultdict(list)
    for event in events:
        turns[getattr(event.data, "turn_id", None)].append(event)

    assert {e.type for e in turns[None]} <= {
        t("session.started"), t("agent.handoff"), t("usage.updated"), t("session.closed"),
    }
    numbered = [f"turn-{n}" for n in range(1, len(lesson.user_inputs) + 2)]
    assert sorted(turn for turn in turns if turn) == sorted(numbered)
    greeting = [e.data for e in turns["turn-1"] if isinstance(e.data, ConversationItemAdded)]
    assert [m.role for m in greeting] == ["assistant"]
    for turn_id, text in zip(numbered[1:], lesson.user_inputs, strict=True):
        facts = turns[turn_id]
        messages = [e.data for e in facts if isinstance(e.data, ConversationItemAdded)]
        assert (messages[0].role, messages[0].text) == ("user", text)
        assert [m.role for m in messages] == ["user", "assistant"]
        assert messages[1].text
        assert {m.agent_id for m in messages} == {events[0].data.agent_id}
        tools = [e.data for e in facts if isinstance(e.data, ToolsExecuted)]
        if "example" in text or "understanding" in text:
            [executed] = tools
            [call] = executed.calls
            wanted = "provide_example" if "example" in text else "check_understanding"
            assert call.name == wanted
            assert call.output
            assert not call.is_error
            updates = [e.data.update.kind for e in facts if e.type == t("tools.execution_updated")]
            assert updates == ["call_started", "call_ended"]
        else:
            assert not tools
