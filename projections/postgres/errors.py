"""The one exception hierarchy of the PostgreSQL projection."""

from __future__ import annotations


class PostgresProjectionError(Exception):
    """Base of every error raised by `projections.postgres`.

    `retryable`: whether applying the same batch again may succeed (the database was
    unreachable, a deadlock, a serialization failure), or whether the batch holds an event
    the projection cannot write, which a retry would only meet again."""

    retryable: bool = False


class UnhandledEventError(PostgresProjectionError):
    """An event type that `rows.row_ops` does not know: the catalog is newer than the
    projector. Send the event to the DLQ, and teach `rows` the type."""

    def __init__(self, event_type: str, *, event_id: str, session_id: str) -> None:
        super().__init__(
            f"the PostgreSQL projection has no rows for {event_type} "
            f"(event {event_id}, session {session_id})"
        )
        self.event_type = event_type
        self.event_id = event_id
        self.session_id = session_id


class ProjectionWriteError(PostgresProjectionError):
    """PostgreSQL refused or lost a batch; nothing of it was committed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
