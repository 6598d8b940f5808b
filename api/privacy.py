"""Opening sealed fields for the routes that show them.

Every store keeps personal fields sealed (see `schemas.sealing`); the API is the one
reader that holds the KEK's private half. Per request it reads the wrapped keys of the
sessions it shows from the key store (one query), unwraps them (an unwrap is cached by
the wrapped bytes, so a key that leaves the store stops opening at once), and opens the
values. An erased session's fields read `[erased]`; without a KEK, `[sealed]`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from psycopg import Connection

from turnlog.projections.postgres.keystore import PostgresKeyStore
from turnlog.schemas.sealing import (
    ERASED,
    UNOPENED,
    DataKey,
    SealingError,
    UnwrappingKey,
    open_value,
)

logger = logging.getLogger(__name__)

Keys = Mapping[str, DataKey | None]
"""Session id -> its data key; None when erased (or never stored)."""


class Opener:
    """Opens sealed values with the keys of the key store in `schema`."""

    def __init__(self, unwrapping: UnwrappingKey | None, *, schema: str) -> None:
        self.unwrapping = unwrapping
        self.schema = schema
        self._unwrap = functools.lru_cache(maxsize=4096)(self._unwrap_uncached)

    @classmethod
    def from_file(cls, path: Path | None, *, schema: str) -> Opener:
        """The opener of the KEK private key at `path`; without one, fields stay sealed."""
        if path is None or not path.exists():
            logger.warning("no KEK private key at %s: personal fields are shown as %s",
                           path, UNOPENED)  # fmt: skip
            return cls(None, schema=schema)
        return cls(UnwrappingKey.from_pem(path.read_bytes()), schema=schema)

    @property
    def missing(self) -> str:
        """What a sealed value reads as without its key."""
        return ERASED if self.unwrapping is not None else UNOPENED

    def keys(self, conn: Connection[Any], session_ids: Iterable[str]) -> dict[str, DataKey | None]:
        """The data keys of `session_ids` (a blocking query)."""
        wanted = sorted(set(session_ids))
        if self.unwrapping is None or not wanted:
            return dict.fromkeys(wanted)
        wrapped = PostgresKeyStore(conn, schema=self.schema).wrapped_keys(wanted)
        keys: dict[str, DataKey | None] = {}
        for session_id in wanted:
            found = wrapped.get(session_id)
            keys[session_id] = (
                self._unwrap(session_id, found.wrapped) if found is not None else None
            )
        return keys

    def _unwrap_uncached(self, key_id: str, wrapped: bytes) -> DataKey | None:
        if self.unwrapping is None:
            return None
        try:
            return self.unwrapping.unwrap(key_id, wrapped)
        except SealingError:
            logger.error("data key %s does not unwrap with this KEK", key_id)
            return None

    def open(self, value: Any, key: DataKey | None) -> Any:
        """`value` with its sealed strings opened (see `schemas.sealing.open_value`)."""
        try:
            return open_value(value, key, missing=self.missing)
        except SealingError:
            logger.error("a sealed value of key %s does not open", key.key_id if key else None)
            return open_value(value, None, missing=self.missing)


def event_opener(opener: Opener, key: DataKey | None) -> Callable[[bytes], bytes]:
    """Opens the sealed fields of one CloudEvent's JSON (for the live stream)."""

    def open_event(value: bytes) -> bytes:
        envelope = json.loads(value)
        envelope["data"] = opener.open(envelope.get("data"), key)
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

    return open_event
