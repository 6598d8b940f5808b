"""The LiveKit worker: what each job process runs.

livekit-agents runs every job in its own process. A job starts its own publisher (the
events of one process go through one producer and one spool), joins the room, records
`session.started`, and starts the tutor's AgentSession with the recorder attached. Its
shutdown callback runs after LiveKit closed the session (whose `close` event records
`session.closed`); it records `session.closed` itself when that never came, then closes
the publisher, which delivers or spools what is still queued. A worker being stopped
(SIGTERM, SIGINT) shuts its jobs down the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, Final

from livekit.agents import (
    AgentServer,
    AgentSession,
    JobContext,
    JobExecutorType,
    JobProcess,
    WorkerOptions,
)
from livekit.protocol import agent
from prometheus_client import CollectorRegistry

from agent_gateway.agent import TutorAgent
from agent_gateway.config import GatewaySettings, load_gateway_settings
from agent_gateway.hooks import JobInfo, RecorderIdentity, SessionRecorder, map_session_started
from agent_gateway.metrics import GatewayMetrics, RegistryMirror, forget_process
from agent_gateway.providers import (
    Providers,
    ProviderSettings,
    build_providers,
    load_provider_settings,
    load_vad,
)
from agent_gateway.publisher import Publisher, PublisherSettings
from schemas import SessionStarted

logger = logging.getLogger(__name__)

SHUTDOWN_MARGIN: Final = 10.0
"""Seconds LiveKit's process shutdown allows beyond the publisher's close timeout, for the
session's own close and the room disconnect that come first."""
MIRROR_INTERVAL: Final = 5.0
"""Seconds between two copies of the publisher's metrics to the multiprocess files."""


def server_options(settings: GatewaySettings) -> WorkerOptions:
    """The worker's options: explicit dispatch under `settings.agent_name`, the LiveKit
    server and credentials from the settings."""
    extra: dict[str, Any] = {}
    if settings.max_jobs is not None:
        extra["load_fnc"] = job_share_load(settings.max_jobs)
    return WorkerOptions(
        entrypoint_fnc=entrypoint,
        prewarm_fnc=prewarm,
        agent_name=settings.agent_name,
        host=settings.health_host,
        port=settings.health_port,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key.get_secret_value(),
        api_secret=settings.livekit_api_secret.get_secret_value(),
        shutdown_process_timeout=settings.publisher_close_timeout + SHUTDOWN_MARGIN,
        **extra,
    )


def job_share_load(max_jobs: int) -> Callable[[AgentServer], float]:
    """A load function: the worker's running jobs as a share of `max_jobs` (at most 1)."""

    def load(server: AgentServer) -> float:
        return min(len(server.active_jobs) / max_jobs, 1.0)

    return load


def prewarm(proc: JobProcess) -> None:
    """Before a job arrives: check the provider settings (a missing key fails here, named)
    and load the VAD model once per process."""
    proc.userdata["provider_settings"] = load_provider_settings()
    proc.userdata["vad"] = load_vad()


@functools.cache
def process_metrics() -> GatewayMetrics:
    """The metrics of this process, created on first use (a process may run several jobs
    under the thread executor, and a metric registers only once)."""
    return GatewayMetrics()


def publisher_settings(settings: GatewaySettings) -> PublisherSettings:
    """The publisher of one job process."""
    return PublisherSettings(
        bootstrap_servers=settings.kafka_bootstrap,
        topic=settings.topic,
        spool_dir=settings.spool_dir,
        queue_size=settings.queue_size,
    )


def job_info(
    job: agent.Job, *, worker_id: str, room_name: str, accepted_at: float, agent_name: str
) -> JobInfo:
    """What session.started says of a LiveKit job (`accepted_at` 0 when unknown; an
    automatically dispatched job names no agent, the configured name stands in)."""
    return JobInfo(
        job_id=job.id,
        agent_name=job.agent_name or agent_name,
        worker_id=worker_id,
        room_name=room_name or job.room.name,
        room_sid=job.room.sid or None,
        accepted_at=accepted_at or None,
        participant_identity=job.participant.identity if job.HasField("participant") else None,
    )


def secret_values(settings: GatewaySettings, providers: ProviderSettings) -> tuple[str, ...]:
    """Every configured secret, for scrubbing error messages before they are recorded."""
    candidates = (
        settings.livekit_api_key,
        settings.livekit_api_secret,
        providers.openai_api_key,
        providers.deepgram_api_key,
    )
    return tuple(s.get_secret_value() for s in candidates if s is not None)


class GatewayJob:
    """The resources of one job (publisher, recorders, providers) and their shutdown."""

    def __init__(
        self, settings: GatewaySettings, *, job_id: str, worker_id: str, own_process: bool
    ) -> None:
        self._settings = settings
        self._job_id = job_id
        self._worker_id = worker_id
        self._own_process = own_process
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # a private registry, mirrored into the multiprocess files the endpoint merges
        registry = CollectorRegistry() if multiprocess else None
        self.publisher = Publisher(publisher_settings(settings), registry=registry)
        self._mirror = RegistryMirror(registry) if registry is not None else None
        self._mirror_task: asyncio.Task[None] | None = None
        self.recorders: list[SessionRecorder] = []
        self.providers: list[Providers] = []

    async def start(self) -> None:
        await self.publisher.start()
        if self._mirror is not None:
            self._mirror_task = asyncio.create_task(self._mirror_forever(self._mirror))

    def recorder(self, *, room_name: str, secrets: tuple[str, ...]) -> SessionRecorder:
        """A recorder publishing through this job's publisher, closed at shutdown."""
        recorder = SessionRecorder(
            sink=self.publisher,
            identity=RecorderIdentity(
                agent_name=self._settings.agent_name,
                worker_id=self._worker_id,
                room_name=room_name,
            ),
            metrics=process_metrics(),
            secrets=secrets,
        )
        self.recorders.append(recorder)
        return recorder

    async def shutdown(self, reason: str) -> None:
        """The job's shutdown callback (after LiveKit closed the session)."""
        for recorder in self.recorders:
            if recorder.close("job_shutdown"):
                logger.info(
                    "session closed by the job shutdown",
                    extra={"session_id": recorder.session_id, "reason": reason},
                )
        await self.publisher.aclose(timeout=self._settings.publisher_close_timeout)
        logger.info("job %s: %s", self._job_id, self.publisher.stats())
        if self._mirror_task is not None:
            self._mirror_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mirror_task
        if self._mirror is not None:
            self._mirror.sync()
            if self._own_process:
                forget_process(os.getpid())
        for providers in self.providers:
            await providers.aclose()

    @staticmethod
    async def _mirror_forever(mirror: RegistryMirror) -> None:
        while True:
            await asyncio.sleep(MIRROR_INTERVAL)
            mirror.sync()


async def entrypoint(ctx: JobContext) -> None:
    """One job: publisher, room, recorder, session."""
    settings = load_gateway_settings()
    provider_settings: ProviderSettings = (
        ctx.proc.userdata.get("provider_settings") or load_provider_settings()
    )
    job = GatewayJob(
        settings,
        job_id=ctx.job.id,
        worker_id=ctx.worker_id,
        own_process=ctx.proc.executor_type == JobExecutorType.PROCESS,
    )
    await job.start()
    ctx.add_shutdown_callback(job.shutdown)
    await ctx.connect()

    providers = build_providers(provider_settings, vad=ctx.proc.userdata.get("vad"))
    job.providers.append(providers)
    session: AgentSession[Any] = AgentSession(
        stt=providers.stt, llm=providers.llm, tts=providers.tts, vad=providers.vad,
        **session_options(provider_settings),
    )
    agent = TutorAgent()
    recorder = job.recorder(
        room_name=ctx.room.name, secrets=secret_values(settings, provider_settings)
    )
    recorder.start(
        session, started=session_started(ctx, settings, agent, providers), room=ctx.room
    )
    logger.info(
        "recording session %s of job %s in room %s",
        recorder.session_id,
        ctx.job.id,
        ctx.room.name,
        extra={"session_id": recorder.session_id},
    )
    await session.start(agent=agent, room=ctx.room)


def session_options(provider_settings: ProviderSettings) -> dict[str, Any]:
    """Turn detection: with the offline recognizer, end of turn comes from the VAD. LiveKit's
    default turn detector would call its cloud inference service in dev mode (not offline)
    and, measured here, waits 2.5 s where the VAD decides in about 0.5 s."""
    if provider_settings.stt == "offline":
        return {"turn_handling": {"turn_detection": "vad"}}
    return {}


def session_started(
    ctx: JobContext, settings: GatewaySettings, agent: TutorAgent, providers: Providers
) -> SessionStarted:
    """The first event of a job's session: the job, the agent, the providers."""
    info = job_info(
        ctx.job,
        worker_id=ctx.worker_id,
        room_name=ctx.room.name,
        # when the worker accepted the job: on the running-job info LiveKit hands the process
        accepted_at=ctx._info.accepted_at,
        agent_name=settings.agent_name,
    )
    described = providers.describe()
    return map_session_started(
        info, agent_id=agent.id, stt=described.stt, llm=described.llm, tts=described.tts
    )
