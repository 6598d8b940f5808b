"""`python -m examples.tutor dev | start | console`: the tutor as the platform runs it
(settings checked first, health and metrics on loopback; see `turnlog.agent_gateway.worker`)."""

from __future__ import annotations

import sys

from examples.tutor.entrypoint import entrypoint, prewarm
from turnlog.agent_gateway.providers import (
    GatewayError,
    import_plugins,
    load_provider_settings,
)
from turnlog.agent_gateway.worker import run_worker

if __name__ == "__main__":
    try:  # a chosen provider without its key or its plugin stops here, named
        import_plugins(load_provider_settings())
    except GatewayError as error:
        print(f"tutor: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    run_worker(entrypoint, prewarm=prewarm)
