"""Unauthenticated probes and metrics: liveness, readiness and Prometheus."""

from __future__ import annotations

import math
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State  # noqa: TC002 - read at run time by Litestar
from litestar.openapi.datastructures import ResponseSpec

from api import metrics
from api.deps import container
from api.errors import PROBLEM_JSON, problem_responses
from api.schemas import Liveness, NotReady, ProjectionHealth, Readiness
from projections import watchdog


class HealthController(Controller):
    """Probes take no query parameters: one given is a 400, like on every documented route."""

    path = "/health"
    tags = ["operations"]  # noqa: RUF012 - Litestar's class attribute

    @get(
        "/live", operation_id="live", summary="The process answers",
        responses=problem_responses(400),
    )
    async def live(self) -> Liveness:
        return Liveness("ok")

    @get(
        "/ready",
        operation_id="ready",
        summary="The database answers and no projection is stalled; reports projection lag",
        description="503 when the database is unreachable (or does not answer within 2 s), or "
        "when a projection has lag and "
        "its position has not moved for 2 minutes (its readers would see ever staler data: "
        "a load balancer should prefer another instance).",
        sync_to_thread=True,
        responses={
            **problem_responses(400),
            503: ResponseSpec(
                data_container=NotReady, media_type=PROBLEM_JSON, generate_examples=False,
                description="Not ready: database unreachable or a projection stalled",
            )
        },
    )
    def ready(self, request: Request[Any, Any, State]) -> Response[Readiness] | Response[NotReady]:
        report = watchdog.check_within(container(request).projector, metrics.PROBE_WAIT_SECONDS)
        if report is None:  # unreachable, failed or too slow (logged)
            return _not_ready("database unreachable", "unreachable", [])
        metrics.record_projections(report)
        projections = [
            ProjectionHealth(p.name, p.position, p.head, p.lag,
                             p.idle_seconds if math.isfinite(p.idle_seconds) else None, p.stalled)
            for p in report
        ]
        stalled = [p.name for p in report if p.stalled]
        if stalled:
            return _not_ready(f"projection(s) stalled: {', '.join(stalled)}", "ok", projections)
        return Response(Readiness("ready", "ok", projections, []))


def _not_ready(
    detail: str, database: str, projections: list[ProjectionHealth]
) -> Response[NotReady]:
    body = NotReady(
        title="Service Unavailable", status=503, detail=detail, database=database,
        projections=projections, stalled=[p.name for p in projections if p.stalled],
    )
    return Response(body, status_code=503, media_type=PROBLEM_JSON)


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]  # noqa: RUF012

    @get(
        "/",
        operation_id="metrics",
        summary="Prometheus metrics: requests, latency, usage ingested, projection lag",
        sync_to_thread=True,
        media_type=metrics.CONTENT_TYPE,
        responses=problem_responses(400),
    )
    def metrics(self, request: Request[Any, Any, State]) -> Response[bytes]:
        return Response(metrics.render(container(request)), media_type=metrics.CONTENT_TYPE)
