"""Operations: `/healthz` (the process answers), `/readyz` (its dependencies answer),
`/metrics` (Prometheus). No API key: they say nothing about the data."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final, Literal

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ConfigDict
from starlette.concurrency import run_in_threadpool

from turnlog.api.base import ApiModel
from turnlog.api.deps import ServicesDep, reject_unknown_query
from turnlog.api.errors import ApiError

logger = logging.getLogger(__name__)
router = APIRouter(tags=["operations"], dependencies=[Depends(reject_unknown_query)])

CHECK_TIMEOUT_S: Final = 3.0


class Health(ApiModel):
    status: Literal["ok"] = "ok"


class Check(ApiModel):
    ok: bool
    error: str | None = None
    """Why the dependency is not ready."""


class Readiness(ApiModel):
    """Whether each dependency answers."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "status": "not_ready",
            "checks": {
                "postgres": {"ok": True, "error": None},
                "analytics": {"ok": False, "error": "the analytics store cannot be reached"},
                "kafka": {"ok": True, "error": None},
            },
        }]}
    )  # fmt: skip

    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
    """`postgres`, `analytics` and `kafka`."""


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    summary="The dependencies answer",
    responses={503: {"model": Readiness, "description": "A dependency does not answer"}},
)
async def readyz(services: ServicesDep, response: Response) -> Readiness:
    """PostgreSQL, the analytics store and Kafka, each checked with a short timeout;
    503 names the ones that failed."""
    topic = services.settings.events_topic
    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "postgres": lambda: services.db.run(services.db.ping),
        "analytics": lambda: run_in_threadpool(services.analytics.ping),
        "kafka": lambda: services.kafka.partitions(topic),
    }
    results = await asyncio.gather(*(_check(name, probe) for name, probe in probes.items()))
    checks = dict(zip(probes, results, strict=True))
    ready = all(c.ok for c in checks.values())
    if not ready:
        response.status_code = 503
    return Readiness(status="ready" if ready else "not_ready", checks=checks)


_USERINFO: Final = re.compile(r"(?<=://)[^/@\s]+@")


def redact_userinfo(text: str) -> str:
    """`text` without the credentials of any URL in it (`/readyz` needs no key, and a
    store's error may quote its URL)."""
    return _USERINFO.sub("***@", text)


async def _check(name: str, probe: Callable[[], Awaitable[object]]) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await probe()
    except ApiError as error:
        return Check(ok=False, error=redact_userinfo(error.message))
    except TimeoutError:
        return Check(ok=False, error=f"no answer within {CHECK_TIMEOUT_S:g} s")
    except Exception as error:
        logger.warning("readiness check %s failed: %r", name, error)
        return Check(ok=False, error=type(error).__name__)
    return Check(ok=True)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                     "description": "Requests by route and status, latency histograms, "
                     "tokens issued and refused, in Prometheus' text format."}},
)  # fmt: skip
async def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
