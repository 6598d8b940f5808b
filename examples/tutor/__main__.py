"""`python -m examples.tutor dev | start | console`: the tutor as the platform runs it
(settings checked first, health and metrics on loopback; see `turnlog.agent_gateway.worker`)."""

from __future__ import annotations

from examples.tutor.entrypoint import entrypoint, prewarm
from turnlog.agent_gateway.worker import run_worker

if __name__ == "__main__":
    run_worker(entrypoint, prewarm=prewarm)
