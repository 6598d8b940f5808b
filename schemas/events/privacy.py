"""Records of the key store and of erasures: not conversation facts, so they live on their
own topics (`turnlog.keys`, compacted; `turnlog.erasures`, the audit trail), never on the
log, which cannot forget."""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from pydantic import Field

from turnlog.schemas.base import EventPayload, Record, UtcDatetime

ErasureScope: TypeAlias = Literal["session", "participant", "retention"]
"""Why an erasure ran: a session named by id, a participant identity, or the retention
period of the read models."""


class DataKeyIssued(EventPayload):
    """A producer made the data key that seals a session's personal fields, wrapped by the
    key-encryption key (KEK). Published on `turnlog.keys`, keyed by `key_id`; issued again
    (same key, more subjects) when a new participant joins. Erasure writes a tombstone."""

    TYPE: ClassVar[str] = "turnlog.key.issued.v1"

    key_id: str
    """Id of the data key; Turnlog's keys are per session, so it is the session id."""
    algorithm: Literal["AES-256-SIV"] = "AES-256-SIV"
    """How fields are sealed with the data key."""
    wrapping: Literal["RSA-OAEP-SHA256"] = "RSA-OAEP-SHA256"
    """How the data key is wrapped by the KEK."""
    kek_id: str
    """Fingerprint of the KEK that wrapped it (first 16 hex digits of SHA-256 of its DER
    public key)."""
    wrapped_key: str
    """The wrapped data key, base64."""
    subject_digests: tuple[str, ...] = ()
    """SHA-256 (hex) of the identity of each of the session's participants, agents
    excluded (`schemas.sealing.subject_digest`): the index an erasure by participant
    identity searches. The identities themselves never leave the agent in clear."""


class ErasureStep(Record):
    """What one store did for an erasure."""

    store: str
    """`key_store`, `postgres`, `clickhouse`, `kafka` (tombstones) or `gateway`."""
    action: str
    """What was done, e.g. `deleted data key`, `deleted 42 rows`, `tombstoned turnlog.keys`."""
    count: int = Field(default=0, ge=0)
    """How many keys, rows or records it touched."""


class ErasureCompleted(EventPayload):
    """An erasure finished: the keys of the named sessions are destroyed and the read
    models purged. Names what was erased, never what it said: proof for an auditor.
    Published on `turnlog.erasures`."""

    TYPE: ClassVar[str] = "turnlog.erasure.completed.v1"

    erasure_id: str
    """Id of the erasure (UUIDv7), also the event's `sessionid`."""
    scope: ErasureScope
    """What was asked for."""
    session_ids: tuple[str, ...]
    """The sessions whose data keys were destroyed (empty: nothing matched)."""
    requested_by: str
    """Name of the API key or operator that asked (`cli:<user>`, `retention`)."""
    requested_at: UtcDatetime
    """When it was asked for (UTC)."""
    reason: str | None = None
    """Free text given with the request (a ticket number); must not quote personal data."""
    steps: tuple[ErasureStep, ...] = ()
    """What each store did."""
    subject_digest: str | None = None
    """For an erasure by participant identity: SHA-256 of the identity, so an auditor who
    knows it can match the request without this record naming the person."""
