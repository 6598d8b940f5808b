"""What every local stack component offers the launcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    address: str
    pid: int | None = None
    detail: str = ""


class Component(Protocol):
    name: str

    def start(self) -> str:
        """Start (or find running) and wait until ready; return a one-line summary."""
        ...

    def stop(self) -> str:
        """Stop if running; return a one-line summary."""
        ...

    def status(self) -> ComponentStatus: ...
