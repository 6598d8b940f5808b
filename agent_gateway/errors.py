"""Errors of the worker itself. `GatewayError`, the one base of the package, lives with the
providers (`agent_gateway.providers.errors`) and is re-exported here."""

from __future__ import annotations

from agent_gateway.providers.errors import GatewayError

__all__ = ["ConfigurationError", "GatewayError"]


class ConfigurationError(GatewayError):
    """A worker setting is missing, a placeholder, or invalid; the message names every
    environment variable to fix, never a secret's value."""

    def __init__(self, message: str, *, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables
