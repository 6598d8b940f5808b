"""What every response goes through: security headers and request metrics.

Plain ASGI middleware (no `BaseHTTPMiddleware`, which costs a task and a stream per
request): it wraps `send` to add the headers and to time the response, and labels the
metrics with the route's template (`/v1/sessions/{session_id}`), never the raw path, so
ids do not explode the label set.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""The Content-Security-Policy of everything that is not a page: nothing may load."""

SECURITY_HEADERS: Final[list[tuple[bytes, bytes]]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_CSP: Final = b"content-security-policy"
_UNMATCHED: Final = "<unmatched>"
_INTERNAL_ERROR: Final = b'{"error":"internal_error","message":"the request failed; it is logged"}'

logger = logging.getLogger(__name__)


class ApiMetrics:
    """The API's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "turnlog_api_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "turnlog_api_request_duration_seconds",
            "Time to the response's first byte, by route template.",
            ["method", "route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )  # fmt: skip
        self.tokens_issued = Counter(
            "turnlog_api_tokens_issued", "LiveKit tokens issued.", registry=self.registry
        )
        self.tokens_refused = Counter(
            "turnlog_api_tokens_refused",
            "Token requests refused, by reason (validation_failed, unauthenticated, "
            "forbidden, rate_limited, dependency_unavailable...).",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.live_streams = Counter(
            "turnlog_api_live_streams", "Live event streams opened.", registry=self.registry
        )
        self.erasures = Counter(
            "turnlog_api_erasures", "Erasures asked for, by scope and outcome (completed, "
            "pending: Kafka records not yet written).",
            ["scope", "status"], registry=self.registry,
        )  # fmt: skip


class ResponseMiddleware:
    """Adds the security headers to every HTTP response and records its metrics.
    `page_csp` is the policy of HTML pages (the API docs) that set none of their own (the
    console sets its own); everything else gets `JSON_CSP`."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, page_csp: str) -> None:
        self.app = app
        self.metrics = metrics
        self._json_csp = JSON_CSP.encode()
        self._page_csp = page_csp.encode()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        responded = False

        async def send_with_headers(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html = any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                own = html and any(k == _CSP for k, _ in headers)  # the console's page
                message["headers"] = [*headers, *SECURITY_HEADERS]
                if not own:
                    message["headers"].append((_CSP, self._page_csp if html else self._json_csp))
                responded = True
                self._observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Logged here with its trace; the caller gets the reason code only.
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if responded:
                raise
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": _INTERNAL_ERROR})

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or _UNMATCHED
        key = (scope["method"], template, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: once per key
            children = self._children[key] = (
                self.metrics.requests.labels(key[0], template, str(status)),
                self.metrics.latency.labels(key[0], template),
            )
        children[0].inc()
        children[1].observe(elapsed)
