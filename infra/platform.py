"""The whole platform on one machine: the local stack and our three services."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from turnlog.infra.stack.components import ComponentStatus
from turnlog.infra.stack.config import StackSettings
from turnlog.infra.stack.services import Services
from turnlog.infra.stack.stack import Stack

Report = Callable[[str], None]


class Platform:
    """Stack (Kafka, PostgreSQL, chDB, LiveKit) plus services (streams, API, gateway)."""

    def __init__(
        self, settings: StackSettings, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.stack = Stack(settings)
        self.services = Services(settings, extra_env)

    def up(self, report: Report = print) -> dict[str, float]:
        """Start what is not running; every step is idempotent. Returns seconds per step."""
        seconds: dict[str, float] = {}
        started = time.monotonic()
        self.stack.up(report)
        seconds["stack"] = time.monotonic() - started
        step = time.monotonic()
        self.services.up(report)
        seconds["services"] = time.monotonic() - step
        return seconds

    def down(self, report: Report = print) -> None:
        """Stop the services, then the stack (data is kept)."""
        self.services.down(report)
        self.stack.down(report)

    def status(self) -> list[ComponentStatus]:
        return [*self.stack.status(), *self.services.status()]
