"""Unauthenticated probes and metrics: liveness, readiness and Prometheus."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State  # noqa: TC002 - read at run time by Litestar
from litestar.exceptions import ServiceUnavailableException

from api import metrics
from api.controllers.admin import projection_states
from api.deps import container
from api.errors import problem_responses
from api.schemas import Liveness, Readiness

log = logging.getLogger("modelledger.api")


class HealthController(Controller):
    path = "/health"
    tags = ["operations"]  # noqa: RUF012 - Litestar's class attribute

    @get("/live", operation_id="live", summary="The process answers")
    async def live(self) -> Liveness:
        return Liveness("ok")

    @get(
        "/ready",
        operation_id="ready",
        summary="The database answers; reports projection lag",
        sync_to_thread=True,
        responses=problem_responses(503),
    )
    def ready(self, request: Request[Any, Any, State]) -> Readiness:
        c = container(request)
        try:
            with c.store.read() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
            states = projection_states(list(c.projector.status()))
        except Exception:
            log.warning("readiness check failed", exc_info=True)
            raise ServiceUnavailableException(detail="database unreachable") from None
        return Readiness("ready", "ok", states)


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]  # noqa: RUF012

    @get(
        "/",
        operation_id="metrics",
        summary="Prometheus metrics: requests, latency, usage ingested, projection lag",
        sync_to_thread=True,
        media_type=metrics.CONTENT_TYPE,
    )
    def metrics(self, request: Request[Any, Any, State]) -> Response[bytes]:
        return Response(metrics.render(container(request)), media_type=metrics.CONTENT_TYPE)
