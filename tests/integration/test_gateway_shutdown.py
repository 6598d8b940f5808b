"""The job shutdown path on the real broker: a job's `JobRecording` records
`session.closed` when the job ends before the session closed itself, exactly once and
last, then closes the publisher without losing an event."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentSession

from examples.tutor.agent import TutorAgent
from tests.conftest import Topics
from tests.kafka_events import read_events
from turnlog.agent_gateway.config import RecordSettings
from turnlog.agent_gateway.providers import ProviderSettings, build_providers
from turnlog.agent_gateway.publisher import PublisherStats
from turnlog.agent_gateway.record import JobRecording
from turnlog.schemas import EVENTS_TOPIC, CloudEvent, SessionStarted
from turnlog.schemas.sealing import WrappingKey, generate_kek

pytestmark = pytest.mark.integration


def gateway_settings(bootstrap: str, prefix: str, spool: Path) -> RecordSettings:
    return RecordSettings.model_validate(
        {
            "TURNLOG_KAFKA_BOOTSTRAP": bootstrap,
            "TURNLOG_TOPIC_PREFIX": prefix,
            "TURNLOG_SPOOL_DIR": str(spool),
        }
    )


async def shut_down_mid_session(settings: RecordSettings) -> tuple[str, PublisherStats]:
    job = JobRecording(settings, job_id="AJ_stop", agent_name="tutor", worker_id="AW_test",
                       own_process=False, wrapping=WrappingKey.from_pem(generate_kek()[1]),
                       redactor=None)  # fmt: skip
    await job.start()
    providers = build_providers(ProviderSettings(stt="offline", llm="offline", tts="offline"))
    session: AgentSession[Any] = AgentSession(llm=providers.llm)
    recorder = job.recorder(room_name="lesson-stop", secrets=())
    started = SessionStarted(job_id="AJ_stop", agent_name="tutor", worker_id="AW_test")
    recorder.start(session, started=started)
    await session.start(TutorAgent(), capture_run=True)
    await session.run(user_input="what is the capital of Italy")

    await job.shutdown("parent process shutdown")  # the worker is being stopped
    await session.aclose()  # LiveKit's own close, after: recorded no more
    await providers.aclose()
    return recorder.session_id, job.publisher.stats()


async def read_all(bootstrap: str, topic: str, session_id: str) -> list[CloudEvent[Any]]:
    return await read_events(
        bootstrap,
        topic,
        keep=lambda e: e.sessionid == session_id,
        until=lambda events: bool(events) and events[-1].type == "turnlog.session.closed.v1",
    )


def test_a_stopped_job_closes_its_session_once_and_last(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    settings = gateway_settings(kafka_bootstrap, topics.prefix, tmp_path / "spool")

    session_id, stats = asyncio.run(shut_down_mid_session(settings))
    events = asyncio.run(read_all(kafka_bootstrap, topics.name(EVENTS_TOPIC), session_id))

    types = [e.type for e in events]
    assert types[0] == "turnlog.session.started.v1"
    assert types.count("turnlog.session.closed.v1") == 1
    assert types[-1] == "turnlog.session.closed.v1"
    assert events[-1].data.reason == "job_shutdown"
    assert "turnlog.conversation.item_added.v1" in types
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert (stats.dropped, stats.failed, stats.spooled) == (0, 0, 0)
    assert stats.sent == len(events)
