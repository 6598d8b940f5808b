"""The platform worker's options, and what a job tells session.started."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from livekit.agents import JobContext, WorkerOptions
from livekit.protocol import agent, models

from examples.tutor.entrypoint import entrypoint, prewarm
from turnlog.agent_gateway.config import GatewaySettings
from turnlog.agent_gateway.record import job_info, secret_values
from turnlog.agent_gateway.worker import SHUTDOWN_MARGIN, server_options

pytestmark = pytest.mark.unit


def settings(**overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "secret-7c1d",
        "TURNLOG_TOPIC_PREFIX": "t1.",
    }
    values.update(overrides)
    return GatewaySettings.model_validate(values)


def test_options_for_explicit_dispatch_on_the_configured_server() -> None:
    options = server_options(
        settings(LIVEKIT_URL="wss://lk.example", TURNLOG_AGENT_NAME="tutor"),
        entrypoint=entrypoint, prewarm=prewarm,
    )  # fmt: skip

    assert isinstance(options, WorkerOptions)
    assert options.entrypoint_fnc is entrypoint
    assert options.prewarm_fnc is prewarm
    assert options.agent_name == "tutor"
    assert options.ws_url == "wss://lk.example"
    assert (options.api_key, options.api_secret) == ("devkey", "secret-7c1d")
    assert options.shutdown_process_timeout == 5.0 + SHUTDOWN_MARGIN
    assert "secret-7c1d" not in repr(options)


def test_options_survive_the_trip_to_a_job_process() -> None:
    options = server_options(settings(), entrypoint=entrypoint)

    copy = pickle.loads(pickle.dumps(options))

    assert copy.entrypoint_fnc is entrypoint
    assert copy.agent_name == "turnlog-tutor"


def test_the_worker_reads_the_recorder_settings_too() -> None:
    configured = settings(TURNLOG_SPOOL_DIR="/tmp/spool", TURNLOG_PUBLISHER_QUEUE_SIZE="7")

    assert configured.topic == "t1.turnlog.events"
    assert configured.kafka_bootstrap == "127.0.0.1:19092"
    assert str(configured.spool_dir) == "/tmp/spool"
    assert configured.queue_size == 7


@dataclass
class _Room:
    name: str


@dataclass
class _RunningJob:
    accepted_at: float


@dataclass
class FakeJobContext:
    """What `job_info` reads of a `JobContext`."""

    job: agent.Job
    worker_id: str
    room: _Room
    _info: _RunningJob = field(default_factory=lambda: _RunningJob(0.0))


def context(job: agent.Job, *, room_name: str, accepted_at: float) -> JobContext:
    fake = FakeJobContext(job, "AW_1", _Room(room_name), _RunningJob(accepted_at))
    return cast(JobContext, cast(Any, fake))


def test_job_info_of_an_explicit_dispatch() -> None:
    job = agent.Job(
        id="AJ_42",
        agent_name="turnlog-tutor",
        room=models.Room(name="lesson-1", sid="RM_1"),
        participant=models.ParticipantInfo(identity="student"),
    )

    info = job_info(context(job, room_name="lesson-1", accepted_at=1_767_225_600.0),
                    agent_name="ignored")  # fmt: skip

    assert (info.job_id, info.agent_name, info.worker_id) == ("AJ_42", "turnlog-tutor", "AW_1")
    assert (info.room_name, info.room_sid) == ("lesson-1", "RM_1")
    assert info.accepted_at == 1_767_225_600.0
    assert info.participant_identity == "student"


def test_job_info_of_an_automatic_dispatch_without_accept_time() -> None:
    job = agent.Job(id="AJ_43", room=models.Room(name="lesson-2"))

    info = job_info(context(job, room_name="", accepted_at=0.0), agent_name="tutor")

    assert (info.agent_name, info.room_name, info.room_sid) == ("tutor", "lesson-2", None)
    assert info.accepted_at is None
    assert info.participant_identity is None


def test_every_secret_of_the_environment_is_scrubbed() -> None:
    environ = {
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "secret-7c1d",
        "OPENAI_API_KEY": "sk-test-1234",
        "AWS_SECRET_ACCESS_KEY": "aws-9",
        "GOOGLE_APPLICATION_CREDENTIALS": "/keys/g.json",
        "DEEPGRAM_API_KEY": "",
        "TURNLOG_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "HOME": "/root",
    }

    assert set(secret_values(environ)) == {
        "devkey", "secret-7c1d", "sk-test-1234", "aws-9", "/keys/g.json",
    }
