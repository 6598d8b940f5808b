"""`turnlog.record` on the real broker, with a hand-written `JobContext` (what `record`
reads of a job, nothing more): two sessions at once in one job share the job's one
publisher, each is contiguous and closed last, the job ends once both closed (not when the
first did), and its shutdown callback, registered once, delivers everything."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from livekit import rtc
from livekit.agents import AgentSession, JobContext, JobExecutorType
from livekit.protocol import agent, models

import turnlog
from examples.tutor.agent import TutorAgent
from tests.conftest import Topics
from tests.kafka_events import read_events
from turnlog.agent_gateway.offline.llm import OfflineLLM
from turnlog.schemas import EVENTS_TOPIC, CloudEvent

pytestmark = pytest.mark.integration


@dataclass
class _Process:
    executor_type: JobExecutorType = JobExecutorType.THREAD


@dataclass
class _RunningJob:
    accepted_at: float = 1_767_225_600.0


@dataclass
class FakeJob:
    """The parts of a `JobContext` that `turnlog.record` uses, as LiveKit provides them."""

    job: agent.Job
    room: rtc.Room
    worker_id: str = "AW_fake"
    proc: _Process = field(default_factory=_Process)
    _info: _RunningJob = field(default_factory=_RunningJob)
    callbacks: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)
    shutdowns: list[str] = field(default_factory=list)

    def add_shutdown_callback(self, callback: Callable[[str], Awaitable[None]]) -> None:
        self.callbacks.append(callback)

    def shutdown(self, reason: str = "user requested") -> None:
        self.shutdowns.append(reason)

    async def run_shutdown(self, reason: str) -> None:
        for callback in self.callbacks:  # as LiveKit runs them at the job's end
            await callback(reason)


async def two_sessions(bootstrap: str, prefix: str, spool: Path) -> FakeJob:
    job = agent.Job(id="AJ_two", agent_name="tutor",
                    room=models.Room(name="lesson-two", sid="RM_2"))  # fmt: skip
    fake = FakeJob(job, rtc.Room())
    ctx = cast(JobContext, cast(Any, fake))
    sessions: list[AgentSession[Any]] = [AgentSession(llm=OfflineLLM()) for _ in range(2)]
    recordings = [
        await turnlog.record(session, ctx, kafka_bootstrap=bootstrap, topic_prefix=prefix,
                             spool_dir=spool)
        for session in sessions
    ]  # fmt: skip
    for session in sessions:
        await session.start(TutorAgent(), capture_run=True)
    await sessions[0].run(user_input="what is photosynthesis")
    await sessions[1].run(user_input="give me an example of gravity")
    await sessions[0].aclose()
    await asyncio.sleep(0.1)
    assert fake.shutdowns == []  # the other session is still open
    await sessions[1].aclose()
    await asyncio.sleep(0.1)  # the job's end is scheduled after the last close
    assert all(r.closed for r in recordings)
    assert recordings[0]._job is recordings[1]._job  # one publisher for the job
    assert len(fake.callbacks) == 1  # its shutdown registered once
    assert fake.shutdowns == ["session closed: user_initiated"]
    await fake.run_shutdown("session closed: user_initiated")
    stats = recordings[0].stats()
    assert (stats.sent, stats.spooled, stats.dropped) == (stats.enqueued, 0, 0)
    return fake


async def read_all(bootstrap: str, topic: str) -> list[CloudEvent[Any]]:
    def both_closed(events: list[CloudEvent[Any]]) -> bool:
        return sum(e.type == "turnlog.session.closed.v1" for e in events) == 2

    return await read_events(bootstrap, topic, until=both_closed)


def test_two_sessions_of_one_job_through_the_public_api(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    asyncio.run(two_sessions(kafka_bootstrap, topics.prefix, tmp_path / "spool"))
    events = asyncio.run(read_all(kafka_bootstrap, topics.name(EVENTS_TOPIC)))

    sessions: dict[str, list[CloudEvent[Any]]] = {}
    for event in events:
        sessions.setdefault(event.sessionid, []).append(event)
    assert len(sessions) == 2
    for recorded in sessions.values():
        recorded.sort(key=lambda e: e.sequence)
        assert [e.sequence for e in recorded] == list(range(1, len(recorded) + 1))
        assert recorded[0].type == "turnlog.session.started.v1"
        assert recorded[-1].type == "turnlog.session.closed.v1"
        started = recorded[0].data
        assert (started.job_id, started.agent_name, started.worker_id) == (
            "AJ_two", "tutor", "AW_fake")
        assert (started.llm.provider, started.llm.model) == ("turnlog-offline", "tutor-script-v1")
        assert started.accepted_at is not None
        assert {e.source for e in recorded} == {"/agents/tutor/AW_fake"}
        assert {e.subject for e in recorded} == {"lesson-two"}
        assert any(e.type == "turnlog.conversation.item_added.v1" for e in recorded)
