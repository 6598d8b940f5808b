"""Errors of the agent gateway's providers.

`GatewayError` is the one base of the gateway's own errors; everything the providers raise
at configuration time derives from it. Errors that LiveKit handles itself (retries, the
session's `error` event) stay LiveKit's `APIError` family, raised at the boundary.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error raised by `agent_gateway`."""


class ProviderConfigError(GatewayError):
    """A provider cannot be built from the configuration: an unknown choice, a missing or
    placeholder API key, or a local engine that is not installed. The message names the
    environment variable (or the Debian package) to fix, never a secret's value."""
