"""The one exception hierarchy of `streams`."""

from __future__ import annotations


class StreamsError(Exception):
    """Base of every error raised by `streams`."""


class ConfigurationError(StreamsError):
    """The settings are invalid; `variables` names the environment variables at fault."""

    def __init__(self, message: str, *, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables


class StartupError(StreamsError):
    """The worker cannot start: a topic is missing, the chDB folder is owned by another
    process, the PostgreSQL schema is not migrated... The message says what to do."""


class SinkUnavailableError(StreamsError):
    """A sink failed for the whole batch (unreachable, or a fault that is not the data's),
    and retries did not help. Nothing may be acknowledged: the caller processes the same
    batch again later."""

    def __init__(self, message: str, *, sink: str) -> None:
        super().__init__(message)
        self.sink = sink


class DependencyUnavailableError(StreamsError):
    """A dependency (Kafka, PostgreSQL, ClickHouse) cannot be reached now; waiting may fix
    it. `dependency` names it for the logs ("PostgreSQL at 127.0.0.1:15432")."""

    def __init__(self, message: str, *, dependency: str) -> None:
        super().__init__(message)
        self.dependency = dependency
