"""Errors of the examples' providers, under the package's one base `GatewayError`.

Errors that LiveKit handles itself (retries, the session's `error` event) stay LiveKit's
`APIError` family, raised at the boundary.
"""

from __future__ import annotations

from turnlog.agent_gateway.errors import GatewayError


class ProviderConfigError(GatewayError):
    """A provider cannot be built from the configuration: an unknown choice, a missing or
    placeholder API key, or a local engine that is not installed. The message names the
    environment variable (or the Debian package) to fix, never a secret's value."""
