"""Request count and latency for Prometheus, per method, route template and status code.

Litestar's ``PrometheusMiddleware`` builds a ``Request`` and four label dictionaries and looks up
four labelled children per request, and keeps an in-progress gauge that, with several workers,
is a memory-mapped write on the way in and out: about a third of the framework time of a cheap
read. This middleware caches the two labelled children it updates per (method, route, status).
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from prometheus_client import Counter, Histogram

from api.errors import status_of

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "modelledger_requests", "HTTP requests answered", ["method", "path", "status_code"]
)
LATENCY = Histogram(
    "modelledger_request_duration_seconds",
    "Time from the request to the last byte of the response",
    ["method", "path", "status_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class RequestMetricsMiddleware(ASGIMiddleware):
    """Counts every HTTP request and observes its duration (not for /metrics and /schema)."""

    scopes = (ScopeType.HTTP,)

    @staticmethod
    def should_bypass_for_scope(scope: Scope) -> bool:
        return scope["path"].startswith(("/metrics", "/schema"))

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        began = perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, observed_send)
        except Exception as error:
            # Raised past this middleware: Litestar's exception handlers, outside it, answer.
            status = status_of(error)
            raise
        finally:
            key = (scope["method"], scope.get("path_template", "?"), status)  # type: ignore[typeddict-item]
            children = self._children.get(key)
            if children is None:
                labels = (key[0], key[1], str(key[2]))
                children = self._children[key] = (
                    REQUESTS.labels(*labels), LATENCY.labels(*labels)
                )
            children[0].inc()
            children[1].observe(perf_counter() - began)
