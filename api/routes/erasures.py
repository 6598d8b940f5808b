"""Erasure: `DELETE /v1/sessions/{id}`, `POST /v1/erasures` (by participant identity),
`GET /v1/erasures/{id}`. Scope: `admin`. See `api.erasure` for what an erasure does."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Response
from pydantic import Field

from turnlog.api.base import ApiModel
from turnlog.api.deps import AdminCaller
from turnlog.api.erasure import (
    UnknownSubjectError,
    erase,
    get_erasure,
    sessions_of_identity,
)
from turnlog.api.errors import NotFoundError, responses
from turnlog.api.models import ErasureOut
from turnlog.api.services import Services

router = APIRouter(tags=["erasure"])


class ParticipantErasureIn(ApiModel):
    identity: str = Field(min_length=1, max_length=512)
    """The participant identity whose sessions to erase (every one it took part in)."""
    reason: str | None = Field(None, max_length=500)
    """Free text for the audit trail (a ticket number); never personal data."""


Reason = Annotated[str | None, Field(max_length=500)]


async def _erase(
    services: Services, response: Response, *, scope: Literal["session", "participant"],
    session_ids: list[str], caller_name: str, reason: str | None, identity: str | None = None,
) -> ErasureOut:  # fmt: skip
    db, settings = services.db, services.settings
    try:
        erasure = await erase(
            db.run, schema=db.schema, bootstrap=settings.kafka_bootstrap,
            topic_prefix=settings.topic_prefix, scope=scope, session_ids=session_ids,
            requested_by=caller_name, reason=reason, identity=identity,
        )  # fmt: skip
    except UnknownSubjectError as error:
        raise NotFoundError(str(error)) from error
    services.metrics.erasures.labels(scope=scope, status=erasure.status).inc()
    response.status_code = 200 if erasure.status == "completed" else 202
    return ErasureOut.of(erasure)


PENDING: Final[dict[int | str, dict[str, Any]]] = {
    202: {"description": "Erased; Kafka records pending."}
}


@router.delete(
    "/v1/sessions/{session_id}",
    summary="Erase a session",
    responses={**PENDING, **responses(401, 403, 404, 422, 429, 503)},
)
async def erase_session(
    session_id: Annotated[str, Path(min_length=1, max_length=200)],
    caller: AdminCaller,
    response: Response,
    reason: Reason = None,
) -> ErasureOut:
    """Forget a session everywhere: its data key is destroyed (every sealed copy, in the
    log, ClickHouse, derived topics, the DLQ and spools, becomes unreadable), its
    personal read-model rows are purged, compacted topics get tombstones, and
    `turnlog.erasures` gets the proof. Idempotent: erasing it again returns the first
    erasure with `already_erased`. Scope: `admin`."""
    return await _erase(caller.services, response, scope="session", session_ids=[session_id],
                        caller_name=caller.key.name, reason=reason)  # fmt: skip


@router.post(
    "/v1/erasures",
    summary="Erase a participant",
    responses={**PENDING, **responses(400, 401, 403, 404, 422, 429, 503)},
)
async def erase_participant(
    body: ParticipantErasureIn, caller: AdminCaller, response: Response
) -> ErasureOut:
    """Erase every session the participant `identity` took part in (as the key store's
    index knows them). 404 when none is recorded. Scope: `admin`."""
    services = caller.services
    sessions = await services.db.run(sessions_of_identity, body.identity, schema=services.db.schema)
    if not sessions:
        raise NotFoundError("no session is recorded for that participant identity",
                            field="identity")  # fmt: skip
    return await _erase(
        services, response, scope="participant", session_ids=sessions,
        caller_name=caller.key.name, reason=body.reason, identity=body.identity,
    )  # fmt: skip


@router.get(
    "/v1/erasures/{erasure_id}",
    summary="One erasure",
    responses=responses(401, 403, 404, 422, 429, 503),
)
async def get_one(
    erasure_id: Annotated[str, Path(min_length=1, max_length=100)], caller: AdminCaller
) -> ErasureOut:
    """An erasure and what each store did. Scope: `admin`."""
    services = caller.services
    erasure = await services.db.run(get_erasure, erasure_id, schema=services.db.schema)
    if erasure is None:
        raise NotFoundError(f"no erasure {erasure_id!r}", field="erasure_id")
    return ErasureOut.of(erasure)
