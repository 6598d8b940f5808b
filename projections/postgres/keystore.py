"""The key store: wrapped data keys and the identities that find them, in PostgreSQL.

`KeyStore` is the small interface the API and the erasure need (a KMS can implement it
later); `PostgresKeyStore` is the default. Keys arrive from `turnlog.keys` through the
key projector (`store_records`, rows and consumed offsets in one transaction, as the read
models do). A key whose session is erased is never stored again, whatever the topic still
holds: the batch reads `erased_sessions` under the lock an erasure conflicts with.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from turnlog.projections.postgres import statements
from turnlog.projections.postgres.erasure import erased_among
from turnlog.projections.postgres.writer import write_offsets
from turnlog.projections.records import SourceRecord
from turnlog.schemas import DataKeyIssued
from turnlog.schemas.sealing import subject_digest


@dataclass(frozen=True)
class WrappedKey:
    """A data key as the store keeps it: wrapped, with the KEK that wrapped it."""

    key_id: str
    kek_id: str
    wrapped: bytes


class KeyStore(Protocol):
    """What reading sealed fields and erasing need of a key store."""

    def wrapped_keys(self, key_ids: Sequence[str]) -> dict[str, WrappedKey]:
        """The keys among `key_ids` that exist (erased and unknown ones are absent)."""
        ...

    def key_ids_of(self, identity: str) -> list[str]:
        """The keys whose sessions the participant `identity` took part in (by digest)."""
        ...


class PostgresKeyStore:
    """`KeyStore` on the `data_keys` and `key_subjects` tables of `schema`."""

    def __init__(self, conn: psycopg.Connection[Any], *, schema: str = "public") -> None:
        self.conn = conn
        self.schema = schema

    def wrapped_keys(self, key_ids: Sequence[str]) -> dict[str, WrappedKey]:
        if not key_ids:
            return {}
        query = sql.SQL("SELECT key_id, kek_id, wrapped_key FROM {} WHERE key_id = ANY(%s)").format(
            sql.Identifier(self.schema, "data_keys")
        )
        with self.conn.cursor() as cur:
            cur.execute(query, (list(key_ids),))
            return {str(k): WrappedKey(str(k), str(kek), bytes(w)) for k, kek, w in cur.fetchall()}

    def key_ids_of(self, identity: str) -> list[str]:
        query = sql.SQL("SELECT key_id FROM {} WHERE subject_digest = %s ORDER BY key_id").format(
            sql.Identifier(self.schema, "key_subjects")
        )
        with self.conn.cursor() as cur:
            cur.execute(query, (subject_digest(identity),))
            return [str(row[0]) for row in cur.fetchall()]


def store_records(
    conn: psycopg.Connection[Any],
    *,
    schema: str,
    consumer: str,
    records: Sequence[SourceRecord],
    offsets: Mapping[tuple[str, int], int],
) -> int:
    """Store the key records of `records` (`turnlog.key.issued.v1`; others are ignored) and
    the consumed `offsets`, in one transaction; returns the keys stored or updated."""
    latest: dict[str, tuple[Any, DataKeyIssued]] = {}
    for record in records:
        data = record.event.data
        if isinstance(data, DataKeyIssued):
            latest[data.key_id] = (record.event.time, data)  # a later issue lists more subjects
    with conn.transaction(), conn.cursor() as cur:
        erased = erased_among(cur, schema, sorted(latest))
        keep = {k: v for k, v in latest.items() if k not in erased}
        if keep:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (key_id, kek_id, algorithm, wrapping, wrapped_key, issued_at) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
                    "%s::bytea[], %s::timestamptz[]) ON CONFLICT (key_id) DO NOTHING"
                ).format(sql.Identifier(schema, "data_keys")),
                (
                    list(keep),
                    [d.kek_id for _, d in keep.values()],
                    [d.algorithm for _, d in keep.values()],
                    [d.wrapping for _, d in keep.values()],
                    [base64.b64decode(d.wrapped_key) for _, d in keep.values()],
                    [t for t, _ in keep.values()],
                ),
            )
            pairs = [(subject, k) for k, (_, d) in keep.items() for subject in d.subject_digests]
            if pairs:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (subject_digest, key_id) SELECT * FROM "
                        "unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING"
                    ).format(sql.Identifier(schema, "key_subjects")),
                    ([s for s, _ in pairs], [k for _, k in pairs]),
                )
        if offsets:
            write_offsets(cur, statements.save_offsets(schema), consumer, offsets)
    return len(keep)
