"""The projection watchdog: a projection with lag that has not moved for a while is stalled.

Stateless, so any process (``/health/ready``, metrics, the job) can ask: the tracking row's
``updated_at`` changes with every batch, so lag > 0 with no update for ``after`` means the
lag grows (or stands) without progress. Probes ask through ``check_within``, which bounds the
wait: with the database down, a read waits for the connection pool's 30 s, past any probe's or
scraper's timeout.
"""

from __future__ import annotations

import logging
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from projections.projector import Projector

STALL_AFTER = timedelta(minutes=2)
log = logging.getLogger("modelledger.projections")


@dataclass(frozen=True)
class ProjectionHealth:
    name: str
    position: int
    head: int
    lag: int
    idle_seconds: float  # since the position last moved
    stalled: bool


def check(
    projector: Projector, *, after: timedelta = STALL_AFTER, now: datetime | None = None
) -> list[ProjectionHealth]:
    """Lag and progress of every projection."""
    now = now or datetime.now(UTC)
    positions = projector.store.positions()
    report = []
    for status in projector.status(positions):
        updated = positions.get(status.name, (0, 0, ""))[2]
        idle = (now - datetime.fromisoformat(updated)).total_seconds() if updated else float("inf")
        report.append(
            ProjectionHealth(
                name=status.name,
                position=status.position,
                head=status.head,
                lag=status.lag,
                idle_seconds=idle,
                stalled=status.lag > 0 and idle >= after.total_seconds(),
            )
        )
    return report


# One read in flight per projector: probes arriving while the database does not answer share
# the read that waits rather than each starting another.
_in_flight: weakref.WeakKeyDictionary[Projector, Future[list[ProjectionHealth]]] = (
    weakref.WeakKeyDictionary()
)
_in_flight_lock = threading.Lock()


def check_within(projector: Projector, seconds: float) -> list[ProjectionHealth] | None:
    """``check`` waiting at most ``seconds`` (on a thread of its own); None, logged, when the
    database did not answer in time or failed."""
    with _in_flight_lock:
        future = _in_flight.get(projector)
        if future is None or future.done():
            future = _in_flight[projector] = Future()
            threading.Thread(target=_check_into, args=(projector, future), daemon=True,
                             name="projection-health").start()
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        log.warning("projection health not read: the database did not answer in %.0f s",
                    seconds)
    except Exception:
        log.warning("projection health not read: the database cannot be read", exc_info=True)
    return None


def _check_into(projector: Projector, future: Future[list[ProjectionHealth]]) -> None:
    try:
        future.set_result(check(projector))
    except Exception as error:  # noqa: BLE001 - handed to the probe that waits for it
        future.set_exception(error)
