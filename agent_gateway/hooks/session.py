"""The session's life and failures: session.started from the job, AgentSession `error`
and `close`. Pure functions; the recorder passes the turn id and the secrets to scrub."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from livekit.agents import APIError, APIStatusError
from livekit.agents import llm as lk_llm
from livekit.agents import stt as lk_stt
from livekit.agents import tts as lk_tts
from livekit.agents.inference.interruption import (
    AdaptiveInterruptionDetector,
    InterruptionDetectionError,
)
from livekit.agents.voice.events import CloseEvent, ErrorEvent

from turnlog.agent_gateway.hooks.convert import model_info, scrub, utc_or_none
from turnlog.schemas import ErrorDetail, ErrorOccurred, ModelInfo, SessionClosed, SessionStarted
from turnlog.schemas.events.session import ErrorSource

_LIVEKIT_ERRORS: tuple[tuple[type[Any], ErrorSource], ...] = (
    (lk_llm.LLMError, "llm"),
    (lk_stt.STTError, "stt"),
    (lk_tts.TTSError, "tts"),
    (lk_llm.RealtimeModelError, "realtime_model"),
    (InterruptionDetectionError, "interruption_detection"),
)


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    """What the gateway knows of the LiveKit job a session runs in."""

    job_id: str
    agent_name: str
    worker_id: str
    room_name: str
    room_sid: str | None = None
    accepted_at: float | None = None
    """Unix time the worker accepted the job; None (or 0) when unknown."""
    participant_identity: str | None = None


def map_session_started(
    job: JobInfo,
    *,
    agent_id: str | None,
    stt: ModelInfo | None = None,
    llm: ModelInfo | None = None,
    tts: ModelInfo | None = None,
) -> SessionStarted:
    """The job accepted and the room joined -> `session.started`, with the provider and
    model of each component the session runs (`Providers.describe()`, or `model_info` of
    a LiveKit component)."""
    return SessionStarted(
        job_id=job.job_id,
        agent_name=job.agent_name,
        worker_id=job.worker_id,
        room_sid=job.room_sid or None,
        agent_id=agent_id,
        participant_identity=job.participant_identity,
        accepted_at=utc_or_none(job.accepted_at),
        stt=stt,
        llm=llm,
        tts=tts,
    )


def map_error(
    ev: ErrorEvent, *, turn_id: str | None, secrets: Iterable[str] = ()
) -> ErrorOccurred:
    """`error` -> `error`: the component, a scrubbed message, never the exception."""
    return ErrorOccurred(
        turn_id=turn_id,
        error=map_error_detail(ev.error, component=ev.source, secrets=secrets),
    )


def map_close(ev: CloseEvent, *, secrets: Iterable[str] = ()) -> SessionClosed:
    """`close` -> `session.closed` with LiveKit's reason."""
    error = map_error_detail(ev.error, secrets=secrets) if ev.error is not None else None
    return SessionClosed(reason=ev.reason.value, error=error)


def error_source(error: object) -> ErrorSource:
    """Which component a LiveKit error object comes from."""
    for error_type, source in _LIVEKIT_ERRORS:
        if isinstance(error, error_type):
            return source
    return "other"


def map_error_detail(
    error: object, *, component: object | None = None, secrets: Iterable[str] = ()
) -> ErrorDetail:
    """A LiveKit `LLMError` / `STTError` / ... (or anything else a plugin emitted) ->
    `ErrorDetail`. The message is the underlying exception's text, scrubbed and cut."""
    cause = getattr(error, "error", error)
    if not isinstance(cause, BaseException):
        cause = None
    info = model_info(component) if _is_model_component(component) else None
    status = cause.status_code if isinstance(cause, APIStatusError) else None
    recoverable = getattr(error, "recoverable", False)
    label = getattr(error, "label", None)
    text = cause.message if isinstance(cause, APIError) else str(cause or error)
    return ErrorDetail(
        source=error_source(error),
        message=scrub(text, secrets=secrets),
        recoverable=recoverable if isinstance(recoverable, bool) else False,
        error_type=type(cause if cause is not None else error).__name__,
        label=label if isinstance(label, str) else None,
        provider=info.provider if info else None,
        model=info.model if info else None,
        status_code=status if status is not None and status >= 0 else None,
    )


def _is_model_component(component: object | None) -> bool:
    return isinstance(
        component,
        lk_llm.LLM
        | lk_stt.STT
        | lk_tts.TTS
        | lk_llm.RealtimeModel
        | AdaptiveInterruptionDetector,
    )
