"""The one place that touches private APIs of LiveKit, aiokafka and prometheus-client,
each checked against the versions it was written for.

- livekit-agents keeps a job's accept time on the running-job info it hands the process
  (`JobContext._info.accepted_at`), with no public accessor.
- aiokafka offers no stop that does not wait for the broker (aio-libs/aiokafka#1101), so
  abandoning a wedged producer fails its pending batches and drops its connections.
- prometheus-client offers no way to add many observations to a histogram's buckets at
  once, so the job processes' metrics mirror adds each bucket's count to its value.

A version outside the checked ones logs a warning once; every access tolerates the field
being gone (None, or nothing done), never an error on the voice path.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
from typing import Any, Final

from aiokafka import __version__ as AIOKAFKA_VERSION
from aiokafka.errors import ProducerClosed
from livekit.agents import JobContext
from livekit.agents.version import __version__ as LIVEKIT_AGENTS_VERSION
from prometheus_client import Histogram

logger = logging.getLogger("turnlog.gateway")

LIVEKIT_AGENTS_CHECKED: Final = ("1.8.",)
"""livekit-agents version prefixes whose internals this module was checked against."""
AIOKAFKA_CHECKED: Final = ("0.14.",)
"""aiokafka version prefixes whose internals this module was checked against."""
PROMETHEUS_CLIENT_CHECKED: Final = ("0.26.",)
"""prometheus-client version prefixes whose internals this module was checked against."""


@functools.cache
def checked(package: str) -> bool:
    """Whether the installed `package` ("livekit-agents", "aiokafka" or
    "prometheus-client") is a version this module was checked against (a warning, once,
    when it is not)."""
    version, prefixes = {
        "livekit-agents": (LIVEKIT_AGENTS_VERSION, LIVEKIT_AGENTS_CHECKED),
        "aiokafka": (AIOKAFKA_VERSION, AIOKAFKA_CHECKED),
        "prometheus-client": (importlib.metadata.version("prometheus-client"),
                              PROMETHEUS_CLIENT_CHECKED),
    }[package]
    ok = str(version).startswith(prefixes)
    if not ok:
        logger.warning(
            "%s %s is not a version Turnlog's use of its internals was checked against (%s)",
            package,
            version,
            ", ".join(f"{prefix}x" for prefix in prefixes),
        )
    return ok


def job_accepted_at(ctx: JobContext) -> float | None:
    """Unix time the worker accepted the job, None when unknown."""
    checked("livekit-agents")
    info = getattr(ctx, "_info", None)
    accepted = getattr(info, "accepted_at", None)
    return float(accepted) if isinstance(accepted, int | float) and accepted > 0 else None


def fail_pending_batches(producer: Any) -> None:
    """Fail every batch an aiokafka producer still holds, so each future is final."""
    checked("aiokafka")
    with contextlib.suppress(Exception):
        producer._message_accumulator.fail_all(ProducerClosed())


def drop_connections(producer: Any) -> None:
    """Close every broker connection of an aiokafka producer's client at once."""
    checked("aiokafka")
    with contextlib.suppress(Exception):
        for connection in list(producer.client._conns.values()):
            connection.close(reason=None)


def add_to_histogram(child: Histogram, added: list[int], total: float) -> bool:
    """Add `added[i]` observations to bucket i of a histogram child (the last: above the
    highest bound) and `total` to its sum, as `observe()` would have one by one (it keeps
    per-bucket counts and a sum). False, with nothing changed, when the fields are not
    there: the caller then observes the values itself."""
    checked("prometheus-client")
    buckets = getattr(child, "_buckets", None)
    total_value = getattr(child, "_sum", None)
    if not isinstance(buckets, list) or len(buckets) != len(added) or total_value is None:
        return False
    if not all(callable(getattr(b, "inc", None)) for b in (*buckets, total_value)):
        return False
    for bucket, count in zip(buckets, added, strict=True):
        if count:
            bucket.inc(count)
    total_value.inc(total)
    return True
