"""`record(session, ctx)`: what `turnlog.record` does.

A job's first `record` call starts the job's publisher (one producer and one spool per
job) and registers its shutdown with the job; every call records one `AgentSession`
(any agent class, pipeline or realtime model, handoffs, several sessions per job) with a
`SessionRecorder` on that publisher. The job's shutdown callback runs after LiveKit closed
the sessions (whose `close` events record `session.closed`); it records `session.closed`
itself for a session whose close never came, then closes the publisher, which delivers
or spools what is still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from livekit import api
from livekit.agents import AgentSession, JobContext, JobExecutorType
from prometheus_client import CollectorRegistry

from turnlog.agent_gateway import internals
from turnlog.agent_gateway.config import RecordSettings, load_record_settings, load_wrapping_key
from turnlog.agent_gateway.errors import ConfigurationError
from turnlog.agent_gateway.hooks import (
    JobInfo,
    RecorderIdentity,
    SessionRecorder,
    map_session_started,
)
from turnlog.agent_gateway.hooks.convert import model_info
from turnlog.agent_gateway.metrics import (
    RECORDED_TYPES,
    GatewayMetrics,
    RegistryMirror,
    forget_process,
)
from turnlog.agent_gateway.publisher import Publisher, PublisherSettings, PublisherStats
from turnlog.agent_gateway.publisher.metrics import collector_for
from turnlog.agent_gateway.redaction import Redactor, redaction_from_env
from turnlog.agent_gateway.sealing import SealingSink
from turnlog.schemas import SessionClosed, SessionStarted
from turnlog.schemas.sealing import WrappingKey

logger = logging.getLogger("turnlog.gateway")

MIRROR_INTERVAL: Final = 5.0
"""Seconds between two copies of the publisher's metrics to the multiprocess files."""
END_JOB_TIMEOUT: Final = 10.0
"""Seconds to wait for the server to end a job whose dispatch was deleted."""
DEFAULT_AGENT_NAME: Final = "agent"
"""The events' agent name when neither the settings nor the job name one."""
_SECRET_VARIABLE: Final = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Recording:
    """One recorded `AgentSession`."""

    session_id: str
    """The `sessionid` of its events (a UUIDv7): the Kafka key, and the id the read models
    and the API use."""
    _recorder: SessionRecorder
    _job: JobRecording

    @property
    def closed(self) -> bool:
        """Whether `session.closed`, its last event, was recorded."""
        return self._recorder.closed

    def stats(self) -> PublisherStats:
        """The counters of the job's publisher (shared by the job's sessions)."""
        return self._job.publisher.stats()


async def record(
    session: AgentSession[Any],
    ctx: JobContext,
    *,
    kafka_bootstrap: str | None = None,
    topic_prefix: str | None = None,
    agent_name: str | None = None,
    spool_dir: str | Path | None = None,
    queue_size: int | None = None,
    publisher_close_timeout: float | None = None,
    secrets: Iterable[str] = (),
    end_job: bool = True,
    kek_public_key: str | None = None,
    redact: str | None = None,
) -> Recording:
    """Record every lifecycle hook of `session` in job `ctx` to Kafka; call it before
    `session.start()`, so the first agent's handoff is recorded too.

    Settings come from the environment (`TURNLOG_KAFKA_BOOTSTRAP`, `TURNLOG_SPOOL_DIR`,
    ...); a keyword that is not None wins. The job's first call fixes the job's publisher:
    later calls of the same job share it. `secrets` are scrubbed from recorded error
    messages, with the values of every environment variable whose name ends in KEY,
    SECRET, TOKEN, PASSWORD or CREDENTIALS. Never blocks on Kafka: while it is unreachable
    the events wait in the spool. Personal fields (transcripts, messages, tool arguments
    and outputs, identities, error messages) are sealed with a data key per session,
    wrapped by `kek_public_key` (TURNLOG_KEK_PUBLIC_KEY); `redact` (TURNLOG_REDACT) removes
    card numbers, e-mail addresses and phone numbers before that. Raises
    `ConfigurationError` for invalid settings (a missing KEK public key included) and
    `RuntimeError` for a session that is already being recorded.

    With `end_job` (the default), the job ends, as a success, once every session recorded
    in it has closed (see `end_job`): an agent left alone in the room would otherwise stay
    until the LiveKit server closes the room and count as failed. Pass False to keep the
    job for a later session.
    """
    settings = load_record_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        agent_name=agent_name,
        spool_dir=spool_dir,
        queue_size=queue_size,
        publisher_close_timeout=publisher_close_timeout,
        kek_public_key=kek_public_key,
        redact=redact,
    )
    job = await _job_recording(ctx, settings)
    if end_job:
        job.end_with_sessions(ctx)
    recorder = job.recorder(
        room_name=ctx.room.name or ctx.job.room.name,
        secrets=(*secret_values(os.environ), *secrets),
    )
    recorder.start(session, started=session_started(ctx, session, job.agent_name), room=ctx.room)
    logger.info(
        "recording session %s of job %s in room %s",
        recorder.session_id,
        ctx.job.id,
        ctx.room.name,
        extra={"session_id": recorder.session_id},
    )
    return Recording(recorder.session_id, recorder, job)


_jobs: dict[str, JobRecording] = {}
"""The recordings of this process's running jobs, by job id (the thread executor runs
several jobs in one process)."""


async def _job_recording(ctx: JobContext, settings: RecordSettings) -> JobRecording:
    job = _jobs.get(ctx.job.id)
    if job is not None:
        if settings != job.settings:
            logger.warning(
                "job %s is already recorded with other settings; its first ones are kept",
                ctx.job.id,
            )
        return job
    job = JobRecording(
        settings,
        wrapping=load_wrapping_key(settings),
        redactor=_redactor(settings),
        job_id=ctx.job.id,
        agent_name=settings.agent_name or ctx.job.agent_name or DEFAULT_AGENT_NAME,
        worker_id=ctx.worker_id,
        own_process=ctx.proc.executor_type == JobExecutorType.PROCESS,
    )
    _jobs[ctx.job.id] = job
    await job.start()
    ctx.add_shutdown_callback(job.shutdown)
    return job


def _redactor(settings: RecordSettings) -> Redactor | None:
    try:
        return redaction_from_env(settings.redact)
    except (ValueError, ImportError) as error:
        raise ConfigurationError(
            f"TURNLOG_REDACT: {error}", variables=("TURNLOG_REDACT",)
        ) from None


def secret_values(environ: dict[str, str] | os._Environ[str]) -> tuple[str, ...]:
    """The values of the environment variables that name a secret (LIVEKIT_API_SECRET,
    OPENAI_API_KEY, ...), to scrub from error messages before they are recorded."""
    return tuple(
        value for name, value in environ.items() if _SECRET_VARIABLE.search(name) and value
    )


def job_info(ctx: JobContext, *, agent_name: str) -> JobInfo:
    """What `session.started` says of the LiveKit job (an automatically dispatched job names
    no agent: the recorder's name stands in)."""
    job = ctx.job
    return JobInfo(
        job_id=job.id,
        agent_name=job.agent_name or agent_name,
        worker_id=ctx.worker_id,
        room_name=ctx.room.name or job.room.name,
        room_sid=job.room.sid or None,
        accepted_at=internals.job_accepted_at(ctx),
        participant_identity=job.participant.identity if job.HasField("participant") else None,
    )


def session_started(ctx: JobContext, session: AgentSession[Any], agent_name: str) -> SessionStarted:
    """The first event of a session: the job, and the provider and model of each component
    the session holds, read from the plugin objects themselves (any plugin; a
    `FallbackAdapter` names the instance that serves first)."""
    return map_session_started(
        job_info(ctx, agent_name=agent_name),
        agent_id=None,
        stt=model_info(session.stt),
        llm=model_info(session.llm),
        tts=model_info(session.tts),
    )


async def end_job(ctx: JobContext, *, reason: str) -> None:
    """End a job whose sessions are over, as a success.

    The LiveKit server fails a job whose agent leaves the room while the job runs ("agent
    worker left the room"), and livekit-agents reports a job's end only after its process
    has left the room: an agent that simply shuts down is always counted as failed. So the
    job's dispatch is deleted first (the server's public API, with the worker's own
    LIVEKIT_* credentials): the server then ends the job as a success and tells the worker
    to stop it. Without a dispatch id or when the call fails, the job shuts down itself.
    """
    dispatch_id = ctx.job.dispatch_id
    if dispatch_id:
        try:
            async with asyncio.timeout(END_JOB_TIMEOUT), api.LiveKitAPI() as lk:
                await lk.agent_dispatch.delete_dispatch(dispatch_id, ctx.job.room.name)
        except Exception as error:  # any failure: fall back to the job's own shutdown
            logger.warning("job %s: its dispatch could not be ended (%s); shutting down",
                           ctx.job.id, type(error).__name__)  # fmt: skip
        else:
            await asyncio.sleep(END_JOB_TIMEOUT)  # the server's termination normally ends us
            logger.info("job %s: no termination from the server; shutting down", ctx.job.id)
    ctx.shutdown(reason)


@functools.cache
def process_metrics() -> GatewayMetrics:
    """The metrics of this process, created on first use (a process may run several jobs
    under the thread executor, and a metric registers only once)."""
    return GatewayMetrics()


class JobRecording:
    """The recording resources of one job (publisher, recorders) and their shutdown."""

    def __init__(
        self,
        settings: RecordSettings,
        *,
        job_id: str,
        agent_name: str,
        worker_id: str,
        own_process: bool,
        wrapping: WrappingKey,
        redactor: Redactor | None,
    ) -> None:
        self.settings = settings
        self.agent_name = agent_name
        self._job_id = job_id
        self._worker_id = worker_id
        self._own_process = own_process
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # a private registry, mirrored into the multiprocess files the endpoint merges
        registry = CollectorRegistry() if multiprocess else None
        self.publisher = Publisher(
            PublisherSettings(
                bootstrap_servers=settings.kafka_bootstrap,
                topic=settings.topic,
                spool_dir=settings.spool_dir,
                queue_size=settings.queue_size,
            ),
            registry=registry,
        )
        # the wrapped data keys: their own topic and spool, as crash-safe as the events
        self.key_publisher = Publisher(
            PublisherSettings(
                bootstrap_servers=settings.kafka_bootstrap,
                topic=settings.keys_topic,
                spool_dir=settings.keys_spool_dir,
                queue_size=1_000,
            ),
            registry=registry,
        )
        self.sink = SealingSink(
            events=self.publisher,
            keys=self.key_publisher,
            wrapping=wrapping,
            redactor=redactor,
        )
        if registry is None:  # served as is; in multiprocess mode the worker shows the zeros
            collector_for(registry).expect(RECORDED_TYPES)
        self._mirror = RegistryMirror(registry) if registry is not None else None
        self._mirror_task: asyncio.Task[None] | None = None
        self.recorders: list[SessionRecorder] = []
        self._end: JobContext | None = None
        self._end_task: asyncio.Task[None] | None = None

    def end_with_sessions(self, ctx: JobContext) -> None:
        """End the job (`ctx.shutdown`) when its last recorded session has closed."""
        self._end = ctx

    def _session_closed(self, _recorder: SessionRecorder, closed: SessionClosed) -> None:
        if self._end is None or not all(r.closed for r in self.recorders):
            return
        ctx, self._end = self._end, None
        self._end_task = asyncio.get_running_loop().create_task(
            end_job(ctx, reason=f"session closed: {closed.reason}")
        )

    async def start(self) -> None:
        await asyncio.gather(self.key_publisher.start(), self.publisher.start())
        if self._mirror is not None:
            self._mirror_task = asyncio.create_task(self._mirror_forever(self._mirror))

    def recorder(self, *, room_name: str, secrets: tuple[str, ...]) -> SessionRecorder:
        """A recorder publishing through this job's publisher, closed at shutdown."""
        recorder = SessionRecorder(
            sink=self.sink,
            identity=RecorderIdentity(
                agent_name=self.agent_name, worker_id=self._worker_id, room_name=room_name
            ),
            metrics=process_metrics(),
            secrets=secrets,
            on_closed=self._session_closed,
        )
        self.recorders.append(recorder)
        return recorder

    async def shutdown(self, reason: str) -> None:
        """The job's shutdown callback (after LiveKit closed the sessions)."""
        _jobs.pop(self._job_id, None)
        if self._end_task is not None and not self._end_task.done():
            self._end_task.cancel()  # the server's termination came first
            with contextlib.suppress(asyncio.CancelledError):
                await self._end_task
        for recorder in self.recorders:
            if recorder.close("job_shutdown"):
                logger.info(
                    "session closed by the job shutdown",
                    extra={"session_id": recorder.session_id, "reason": reason},
                )
        # the events first (their keys are issued before them), then the keys
        await self.publisher.aclose(timeout=self.settings.publisher_close_timeout)
        await self.key_publisher.aclose(timeout=self.settings.publisher_close_timeout)
        logger.info("job %s: %s", self._job_id, self.publisher.stats())
        if self._mirror_task is not None:
            self._mirror_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mirror_task
        if self._mirror is not None:
            self._mirror.sync()
            if self._own_process:
                forget_process(os.getpid())

    @staticmethod
    async def _mirror_forever(mirror: RegistryMirror) -> None:
        while True:
            await asyncio.sleep(MIRROR_INTERVAL)
            mirror.sync()
