"""The worker's options and what a job tells session.started."""

from __future__ import annotations

import pickle

import pytest
from livekit.agents import WorkerOptions
from livekit.protocol import agent, models
from pydantic import SecretStr

from agent_gateway.config import GatewaySettings
from agent_gateway.providers import ProviderSettings
from agent_gateway.worker import (
    SHUTDOWN_MARGIN,
    entrypoint,
    job_info,
    prewarm,
    publisher_settings,
    secret_values,
    server_options,
)

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
    options = server_options(settings(LIVEKIT_URL="wss://lk.example", TURNLOG_AGENT_NAME="tutor"))

    assert isinstance(options, WorkerOptions)
    assert options.entrypoint_fnc is entrypoint
    assert options.prewarm_fnc is prewarm
    assert options.agent_name == "tutor"
    assert options.ws_url == "wss://lk.example"
    assert (options.api_key, options.api_secret) == ("devkey", "secret-7c1d")
    assert options.shutdown_process_timeout == 5.0 + SHUTDOWN_MARGIN
    assert "secret-7c1d" not in repr(options)


def test_options_survive_the_trip_to_a_job_process() -> None:
    options = server_options(settings())

    copy = pickle.loads(pickle.dumps(options))

    assert copy.entrypoint_fnc is entrypoint
    assert copy.agent_name == "turnlog-tutor"


def test_publisher_writes_to_the_prefixed_topic() -> None:
    configured = settings(TURNLOG_SPOOL_DIR="/tmp/spool", TURNLOG_PUBLISHER_QUEUE_SIZE="7")

    publisher = publisher_settings(configured)

    assert publisher.topic == "t1.turnlog.events"
    assert publisher.bootstrap_servers == "127.0.0.1:19092"
    assert str(publisher.spool_dir) == "/tmp/spool"
    assert publisher.queue_size == 7


def test_job_info_of_an_explicit_dispatch() -> None:
    job = agent.Job(
        id="AJ_42",
        agent_name="turnlog-tutor",
        room=models.Room(name="lesson-1", sid="RM_1"),
        participant=models.ParticipantInfo(identity="student"),
    )

    info = job_info(
        job, worker_id="AW_1", room_name="lesson-1", accepted_at=1_767_225_600.0,
        agent_name="ignored",
    )

    assert (info.job_id, info.agent_name, info.worker_id) == ("AJ_42", "turnlog-tutor", "AW_1")
    assert (info.room_name, info.room_sid) == ("lesson-1", "RM_1")
    assert info.accepted_at == 1_767_225_600.0
    assert info.participant_identity == "student"


def test_job_info_of_an_automatic_dispatch_without_accept_time() -> None:
    job = agent.Job(id="AJ_43", room=models.Room(name="lesson-2"))

    info = job_info(job, worker_id="AW_1", room_name="", accepted_at=0.0, agent_name="tutor")

    assert (info.agent_name, info.room_name, info.room_sid) == ("tutor", "lesson-2", None)
    assert info.accepted_at is None
    assert info.participant_identity is None


def test_every_configured_secret_is_scrubbed() -> None:
    providers = ProviderSettings(
        OPENAI_API_KEY=SecretStr("sk-test-1234"), DEEPGRAM_API_KEY=None
    )

    assert secret_values(settings(), providers) == ("devkey", "secret-7c1d", "sk-test-1234")
