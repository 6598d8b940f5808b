"""Errors of the recorder and the platform's agent worker: `GatewayError`, the one base of
the package (the providers' `ProviderConfigError` derives from it too)."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error raised by `turnlog.agent_gateway`."""


class ConfigurationError(GatewayError):
    """A setting is missing, a placeholder, or invalid; the message names every
    environment variable (or keyword) to fix, never a secret's value."""

    def __init__(self, message: str, *, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables
