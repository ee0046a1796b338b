"""Prometheus metrics beyond Litestar's request counts and latency: usage ingested, inference
calls answered, projection lag, the metering spool's backlog."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from concurrent.futures import Future
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

from serving.spool import pending_in

if TYPE_CHECKING:
    from collections.abc import Iterable

    from projections.projector import Projector
    from projections.watchdog import ProjectionHealth
    from services.container import Container

log = logging.getLogger("modelledger.api")
CONTENT_TYPE = CONTENT_TYPE_LATEST
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


def projection_health(projector: Projector) -> list[ProjectionHealth] | None:
    """Every projection's lag and progress, or None (logged) when the database did not answer
    within 2 s or failed."""
    return _PROJECTIONS.read(projector)


def render(container: Container) -> bytes:
    """The metrics page; with several workers, all processes' samples combined."""
    report = projection_health(container.projector)
    if report is not None:
        record_projections(report)
    if container.settings.metering:
        METERING_BACKLOG.set(pending_in(container.settings.data_dir / "spool"))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class _ProjectionReadings:
    """The projections' health, read from the database on a thread of its own: a scrape waits
    at most ``wait`` seconds for it (with the database down, a read waits for the connection
    pool's 30 s, far past a scraper's timeout), and a read still waiting is not started again."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self._lock = threading.Lock()
        self._reads: weakref.WeakKeyDictionary[Projector, Future[list[ProjectionHealth]]] = (
            weakref.WeakKeyDictionary()
        )

    def read(self, projector: Projector) -> list[ProjectionHealth] | None:
        """The report, or None (logged) when the database did not answer in time or failed."""
        with self._lock:
            future = self._reads.get(projector)
            if future is None or future.done():
                future = self._reads[projector] = Future()
                threading.Thread(target=_check, args=(projector, future), daemon=True,
                                 name="metrics-projections").start()
        try:
            return future.result(timeout=self.wait)
        except TimeoutError:
            log.warning("projection gauges not refreshed: the database did not answer in %.0f s",
                        self.wait)
        except Exception:
            log.warning("projection gauges not refreshed: the database cannot be read",
                        exc_info=True)
        return None


def _check(projector: Projector, future: Future[list[ProjectionHealth]]) -> None:
    from projections import watchdog  # noqa: PLC0415 - keeps this module free of the scheduler

    try:
        future.set_result(watchdog.check(projector))
    except Exception as error:  # noqa: BLE001 - handed to the scrape that waits for it
        future.set_exception(error)


_PROJECTIONS = _ProjectionReadings(wait=2.0)
