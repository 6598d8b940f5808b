"""The platform's agent worker: how `make up` runs an agent (the tutor example).

A team's own agent runs however the team runs it (`cli.run_app`); this adds what the
platform's launcher expects of its agent service: the settings checked before anything
starts (a missing `LIVEKIT_API_KEY` exits 2, named), LiveKit's health server on loopback
(LiveKit's own default is every interface), `/metrics` merged from every job process
(prometheus-client's multiprocess mode, prepared before a job process starts), an
optional load by job count, and a process shutdown timeout longer than the publisher's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from turnlog.agent_gateway.config import GatewaySettings, load_gateway_settings
from turnlog.agent_gateway.errors import GatewayError

if TYPE_CHECKING:
    from livekit.agents import AgentServer, JobContext, JobProcess, WorkerOptions

SHUTDOWN_MARGIN: Final = 10.0
"""Seconds LiveKit's process shutdown allows beyond the publisher's close timeout, for the
session's own close and the room disconnect that come first."""

Entrypoint = Callable[["JobContext"], Awaitable[None]]
Prewarm = Callable[["JobProcess"], None]


def server_options(
    settings: GatewaySettings, *, entrypoint: Entrypoint, prewarm: Prewarm | None = None
) -> WorkerOptions:
    """The worker's options: explicit dispatch under `settings.agent_name`, the LiveKit
    server and credentials from the settings."""
    from livekit.agents import WorkerOptions

    extra: dict[str, Any] = {}
    if settings.max_jobs is not None:
        extra["load_fnc"] = job_share_load(settings.max_jobs)
    if prewarm is not None:
        extra["prewarm_fnc"] = prewarm
    return WorkerOptions(
        entrypoint_fnc=entrypoint,
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


def prepare_multiprocess_dir(directory: Path) -> None:
    """Create `directory`, remove a previous run's samples, and make it the
    `PROMETHEUS_MULTIPROC_DIR` of this process and of the job processes it starts.

    prometheus-client picks its storage when it is imported; when a dependency imported it
    already, its storage is re-picked so the metrics created from now on (the gateway's
    own, created per job) write to the directory too."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values: Any = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()


def run_worker(entrypoint: Entrypoint, *, prewarm: Prewarm | None = None) -> None:
    """Check the settings, serve the metrics, then hand over to livekit-agents' CLI (it
    reads `sys.argv`: `dev`, `start`, `console`)."""
    try:
        settings = load_gateway_settings()
    except GatewayError as error:
        print(f"agent worker: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    from livekit.agents import cli

    from turnlog.agent_gateway.metrics import endpoint_zeros, serve_metrics

    if settings.metrics_port:
        zeros = endpoint_zeros()  # first: in memory, not in the directory
        prepare_multiprocess_dir(settings.metrics_dir)
        serve_metrics(host=settings.metrics_host, port=settings.metrics_port,
                      directory=settings.metrics_dir, zeros=zeros,
                      spool_dirs=(settings.spool_dir, settings.keys_spool_dir))  # fmt: skip
    cli.run_app(server_options(settings, entrypoint=entrypoint, prewarm=prewarm))
