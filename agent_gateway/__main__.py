"""`python -m agent_gateway dev | start | console`: the worker, started the way LiveKit
users expect (livekit-agents' CLI, `cli.run_app`).

The settings are read first (a missing `LIVEKIT_API_KEY` stops here, named), then the
Prometheus multiprocess directory is prepared before the worker imports anything that
creates metrics, then `/metrics` is served from this process on
`TURNLOG_GATEWAY_METRICS_HOST:TURNLOG_GATEWAY_METRICS_PORT` (loopback by default).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from agent_gateway.config import GatewaySettings, load_gateway_settings
from agent_gateway.errors import GatewayError


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


def run(settings: GatewaySettings) -> None:
    """Serve the metrics, then hand over to livekit-agents' CLI (it reads `sys.argv`)."""
    if settings.metrics_port:
        prepare_multiprocess_dir(settings.metrics_dir)

    from livekit.agents import cli

    from agent_gateway.metrics import serve_metrics
    from agent_gateway.worker import server_options

    if settings.metrics_port:
        serve_metrics(
            host=settings.metrics_host, port=settings.metrics_port, directory=settings.metrics_dir
        )
    cli.run_app(server_options(settings))


def main() -> None:
    try:
        settings = load_gateway_settings()
    except GatewayError as error:
        print(f"agent_gateway: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    run(settings)


if __name__ == "__main__":
    main()
