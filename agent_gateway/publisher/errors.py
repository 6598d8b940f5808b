"""Errors of the publisher. None of them reaches `Publisher.publish`: broker trouble is
handled by spooling, and disk trouble by keeping events in memory (see `publisher`)."""

from __future__ import annotations


class PublisherError(Exception):
    """Base class of the publisher's errors."""

    retryable: bool = False


class BrokerUnavailableError(PublisherError):
    """No producer could be started: the broker is down, unreachable, or lacks the topic."""

    retryable = True


class SpoolWriteError(PublisherError):
    """The spool could not append to or create a segment file (disk full, I/O error)."""

    retryable = True


class SpoolCorruptError(PublisherError):
    """A spool file does not start with the spool header: it is not ours, or damaged."""
