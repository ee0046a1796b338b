"""The projection watchdog: a projection with lag that has not moved for a while is stalled.

Stateless, so any process (``/health/ready``, metrics, the job) can ask: the tracking row's
``updated_at`` changes with every batch, so lag > 0 with no update for ``after`` means the
lag grows (or stands) without progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from projections.projector import Projector

STALL_AFTER = timedelta(minutes=2)


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
