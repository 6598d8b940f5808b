"""Rate limits, counted by the `limits` library in fixed one-minute windows.

Three limits: per API key across routes, per end-user identity of a token request
(scoped per key), and per client address for what carries no valid credential (failed
authentications, console logins). A window opens at a subject's first request and lasts
a minute; a refused request learns the whole seconds until its window ends (the
`Retry-After` header).

The counters live where `TURNLOG_API_RATE_LIMIT_STORAGE` says: `memory://` (default) in
this process, read and written without leaving the event loop; any other `limits`
storage URI (`redis://host:6379`, `memcached://...`) is shared by every API process and
used through its asyncio client, so the loop never waits on the network.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from dataclasses import dataclass
from typing import Final, Protocol

from limits import RateLimitItem, RateLimitItemPerMinute
from limits import aio as limits_aio
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from turnlog.api.errors import ConfigurationError, DependencyUnavailableError
from turnlog.api.limits_adapter import SparseSweepMemoryStorage, storage_schemes

STORAGE_VARIABLE: Final = "TURNLOG_API_RATE_LIMIT_STORAGE"
_ASYNC: Final = "async+"


def storage_scheme_problem(uri: str) -> str | None:
    """Why `uri` names no `limits` storage (never quoting it: it may hold a password)."""
    scheme = urllib.parse.urlsplit(uri).scheme.removeprefix(_ASYNC)
    if not scheme or "://" not in uri:
        return "must be a storage URI such as memory:// or redis://host:6379"
    if scheme != "memory" and _ASYNC + scheme not in storage_schemes():
        return f"unknown storage scheme {scheme!r}: use memory:// or a limits storage URI"
    return None


class LimitStore(Protocol):
    """Where the counters are: `limits`' fixed window strategy over a storage."""

    shared: bool

    async def hit(self, item: RateLimitItem, subject: tuple[str, ...]) -> bool: ...
    async def test(self, item: RateLimitItem, subject: tuple[str, ...]) -> bool: ...
    async def reset_at(self, item: RateLimitItem, subject: tuple[str, ...]) -> float: ...


class _LocalStore:
    """Counters in this process (no I/O: called straight from the event loop)."""

    shared = False

    def __init__(self) -> None:
        self._limiter = FixedWindowRateLimiter(SparseSweepMemoryStorage())

    async def hit(self, item: RateLimitItem, subject: tuple[str, ...]) -> bool:
        return self._limiter.hit(item, *subject)

    async def test(self, item: RateLimitItem, subject: tuple[str, ...]) -> bool:
        return self._limiter.test(item, *subject)

    async def reset_at(self, item: RateLimitItem, subject: tuple[str, ...]) -> float:
        return self._limiter.get_window_stats(item, *subject).reset_time


class _SharedStore:
    """Counters in a storage server, through `limits`' asyncio storage; a storage that
    cannot be reached answers 503 (the limit is not skipped)."""

    shared = True

    def __init__(self, storage: limits_aio.storage.Storage) -> None:
        self._limiter = limits_aio.strategies.FixedWindowRateLimiter(storage)

    async def hit(self, item: RateLimitItem, subject: tuple[str, ...]) -> bool:
        try:
            return await self._limiter.hit(item, *subject)
        except StorageError as error:
            raise _unavailable() from error

    async def test(self, item: RateLimitItem, subject: tuple[str, ...]) -> bool:
        try:
            return await self._limiter.test(item, *subject)
        except StorageError as error:
            raise _unavailable() from error

    async def reset_at(self, item: RateLimitItem, subject: tuple[str, ...]) -> float:
        try:
            return (await self._limiter.get_window_stats(item, *subject)).reset_time
        except StorageError as error:
            raise _unavailable() from error


def _unavailable() -> DependencyUnavailableError:
    return DependencyUnavailableError(
        "the rate limit storage cannot be reached", dependency="rate-limits"
    )


def limit_store(uri: str) -> LimitStore:
    """The store `uri` names; `ConfigurationError` naming `TURNLOG_API_RATE_LIMIT_STORAGE`
    for an unknown scheme or a storage whose client library is not installed."""
    problem = storage_scheme_problem(uri)
    if problem:
        raise ConfigurationError(f"{STORAGE_VARIABLE}: {problem}", variables=(STORAGE_VARIABLE,))
    if urllib.parse.urlsplit(uri).scheme.removeprefix(_ASYNC) == "memory":
        return _LocalStore()
    try:
        storage = storage_from_string(_ASYNC + uri.removeprefix(_ASYNC), wrap_exceptions=True)
    except LimitsConfigurationError as error:
        # limits names the missing client library; the URI is not repeated
        raise ConfigurationError(
            f"{STORAGE_VARIABLE}: {str(error).replace(uri, '<uri>')}",
            variables=(STORAGE_VARIABLE,),
        ) from None
    if not isinstance(storage, limits_aio.storage.Storage):  # pragma: no cover
        raise ConfigurationError(
            f"{STORAGE_VARIABLE}: not an asyncio storage", variables=(STORAGE_VARIABLE,)
        )
    return _SharedStore(storage)


class RateLimit:
    """`per_minute` requests per subject (a tuple of strings) per minute."""

    def __init__(self, store: LimitStore, *, name: str, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        self.per_minute = per_minute
        self._store = store
        self._item = RateLimitItemPerMinute(per_minute, namespace=f"turnlog-{name}")

    async def hit(self, *subject: str) -> int:
        """Count one request of `subject`: 0 when allowed, else the whole seconds (>= 1)
        until its window ends."""
        if await self._store.hit(self._item, subject):
            return 0
        return await self._seconds_left(subject)

    async def wait(self, *subject: str) -> int:
        """Whole seconds until `subject` may make a request (0: now), counting nothing."""
        if await self._store.test(self._item, subject):
            return 0
        return await self._seconds_left(subject)

    async def _seconds_left(self, subject: tuple[str, ...]) -> int:
        reset_at = await self._store.reset_at(self._item, subject)
        return max(1, math.ceil(reset_at - time.time()))


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The API's limits, in one store."""

    per_key: RateLimit
    """Requests per API key, across routes (`TURNLOG_API_RATE_LIMIT_PER_KEY`)."""
    per_identity: RateLimit
    """Tokens per end-user identity, per key (`TURNLOG_API_RATE_LIMIT_PER_IDENTITY`)."""
    per_address: RateLimit
    """Requests without a credential per address: console logins
    (`TURNLOG_API_RATE_LIMIT_PER_ADDRESS`)."""
    auth_failures: RateLimit
    """Failed authentications per address, then 429 on every route that needs one
    (`TURNLOG_API_AUTH_FAILURES_PER_ADDRESS`)."""
    store: LimitStore

    @classmethod
    def create(
        cls, storage_uri: str, *, per_key: int, per_identity: int, per_address: int,
        auth_failures: int,
    ) -> RateLimits:  # fmt: skip
        store = limit_store(storage_uri)
        return cls(
            per_key=RateLimit(store, name="key", per_minute=per_key),
            per_identity=RateLimit(store, name="identity", per_minute=per_identity),
            per_address=RateLimit(store, name="address", per_minute=per_address),
            auth_failures=RateLimit(store, name="auth-failure", per_minute=auth_failures),
            store=store,
        )
