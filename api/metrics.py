"""Prometheus metrics beyond Litestar's request counts and latency: usage ingested, inference
calls answered, projection lag, the metering spool's backlog."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)

from projections import watchdog
from serving.spool import pending_in

if TYPE_CHECKING:
    from collections.abc import Iterable

    from projections.watchdog import ProjectionHealth
    from services.container import Container

CONTENT_TYPE = CONTENT_TYPE_LATEST
PROBE_WAIT_SECONDS = 2.0  # a probe's or scrape's wait for the database
USAGE_INGESTED = Counter(
    "modelledger_usage_ingested", "Usage records stored (duplicates excluded)", ["route"]
)
INFERENCE_REQUESTS = Counter(
    "modelledger_inference_requests",
    "Inference calls answered on /v2 (and /predict), by what served them and the status",
    ["backend", "code"],
)
# Gauges read fresh from the database by whichever process serves the page ("mostrecent":
# with several workers the latest reading wins, not a stale one of another process).
PROJECTION_LAG = Gauge(
    "modelledger_projection_lag_events", "Events in the log not yet projected", ["projection"],
    multiprocess_mode="mostrecent",
)
PROJECTION_IDLE = Gauge(
    "modelledger_projection_idle_seconds", "Seconds since the projection's position last moved",
    ["projection"], multiprocess_mode="mostrecent",
)
PROJECTION_STALLED = Gauge(
    "modelledger_projection_stalled", "1 when the projection has lag and makes no progress",
    ["projection"], multiprocess_mode="mostrecent",
)

METERING_BACKLOG = Gauge(
    "modelledger_metering_backlog_records",
    "Metered calls on local disk not yet shipped to the event store (every spool of the data "
    "directory)", multiprocess_mode="mostrecent",
)


def record_projections(report: Iterable[ProjectionHealth]) -> None:
    for p in report:
        PROJECTION_LAG.labels(p.name).set(p.lag)
        PROJECTION_IDLE.labels(p.name).set(p.idle_seconds if p.idle_seconds != float("inf") else -1)
        PROJECTION_STALLED.labels(p.name).set(int(p.stalled))


def render(container: Container) -> bytes:
    """The metrics page; with several workers, all processes' samples combined."""
    report = watchdog.check_within(container.projector, PROBE_WAIT_SECONDS)
    if report is not None:  # else the gauges keep their last reading
        record_projections(report)
    if container.settings.metering:
        METERING_BACKLOG.set(pending_in(container.settings.data_dir / "spool"))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)

