"""Prometheus metrics beyond Litestar's request counts and latency: usage ingested, lag."""

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

if TYPE_CHECKING:
    from modelledger.bootstrap import Container

CONTENT_TYPE = CONTENT_TYPE_LATEST
USAGE_INGESTED = Counter(
    "modelledger_usage_ingested", "Usage records stored (duplicates excluded)", ["route"]
)
PROJECTION_LAG = Gauge(
    "modelledger_projection_lag_events", "Events in the log not yet projected", ["projection"],
    multiprocess_mode="max",
)


def render(container: Container) -> bytes:
    """The metrics page; with several workers, all processes' samples combined."""
    for status in container.projector.status():
        PROJECTION_LAG.labels(status.name).set(status.lag)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
