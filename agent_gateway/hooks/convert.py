"""Small conversions shared by the mapping functions: LiveKit's unix timestamps, protobuf
enum names, and scrubbing of text that may quote a secret."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from turnlog.schemas import ModelInfo

MAX_ERROR_MESSAGE: Final = 300
"""Characters of an error message kept in an event."""

_REDACTED: Final = "***"
_SECRET_PATTERNS: Final = (
    # credentials inside a URL: scheme://user:password@host
    (re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.IGNORECASE), "@"),
    # a secret-bearing query parameter
    (
        re.compile(
            r"(?P<keep>[?&](?:api[_-]?key|key|token|access_token|secret|signature|sig)=)[^&\s]+",
            re.IGNORECASE,
        ),
        "",
    ),
    # `Authorization: Bearer x`, `Token x`
    (re.compile(r"(?P<keep>\b(?:bearer|token|basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.I), ""),
    # `api_key=x`, `"secret": "x"`, `password: x`
    (
        re.compile(
            r"(?P<keep>\b(?:(?:api[_-]?)?key|(?:api[_-]?|client[_-]?)?secret|password|passwd"
            r"|(?:access[_-]?|refresh[_-]?)?token|authorization)\b"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+",
            re.IGNORECASE,
        ),
        "",
    ),
    # provider key shapes: OpenAI `sk-...`, JWTs (LiveKit access tokens)
    (re.compile(r"(?P<keep>)\bsk-[A-Za-z0-9_-]{8,}"), ""),
    (re.compile(r"(?P<keep>)\beyJ[\w-]+\.[\w-]+\.[\w-]+"), ""),
)


def utc(timestamp: float) -> datetime:
    """A unix timestamp in seconds (LiveKit's `created_at`, `time.time()`) as aware UTC."""
    return datetime.fromtimestamp(timestamp, UTC)


def utc_or_none(timestamp: float | None) -> datetime | None:
    """`utc`, keeping None (and LiveKit's 0 for "unknown") as None."""
    return utc(timestamp) if timestamp else None


def enum_name(name: str, prefix: str) -> str:
    """`PARTICIPANT_KIND_SIP` -> `sip`: a protobuf enum name without its prefix, lower
    case."""
    return name.removeprefix(prefix).lower()


def model_info(component: object | None) -> ModelInfo | None:
    """Provider and model of a LiveKit STT, LLM, TTS or realtime model (their `provider`
    and `model` properties); None without a component."""
    if component is None:
        return None
    provider = getattr(component, "provider", None)
    model = getattr(component, "model", None)
    return ModelInfo(
        provider=provider if isinstance(provider, str) else None,
        model=model if isinstance(model, str) else None,
    )


def scrub(text: str, *, secrets: Iterable[str] = (), limit: int = MAX_ERROR_MESSAGE) -> str:
    """`text` safe to record: the known `secrets` and anything shaped like a credential
    replaced by `***`, then cut to `limit` characters."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    for pattern, suffix in _SECRET_PATTERNS:
        text = pattern.sub(rf"\g<keep>{_REDACTED}{suffix}", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
