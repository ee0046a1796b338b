"""Hour, day, ISO-week and calendar-month windows over hourly buckets, in any time zone
whose offset is a whole number of hours (so every local boundary is a UTC hour boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.usage_stats import UsageStats

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

WINDOWS = ("hour", "day", "week", "month")
MAX_BUCKETS = {"hour": 24 * 31, "day": 731, "week": 260, "month": 120}


class WindowError(ValueError):
    """A window, time zone or range that cannot be answered; names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError("tz", f"unknown time zone {name!r}") from None


@dataclass
class Bucket:
    start: datetime
    end: datetime
    stats: UsageStats


def floor_local(moment: datetime, window: str, tz: ZoneInfo) -> datetime:
    """The start, in ``tz``, of the window containing ``moment``."""
    local = moment.astimezone(tz)
    if window == "hour":
        local = local.replace(minute=0, second=0, microsecond=0)
    else:
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if window == "week":
            local -= timedelta(days=local.weekday())
        elif window == "month":
            local = local.replace(day=1)
    return _normalise(local.replace(tzinfo=None), tz)


def _normalise(wall: datetime, tz: ZoneInfo) -> datetime:
    """Attach ``tz`` to a wall-clock time; a time skipped by DST moves to the next valid hour."""
    aware = wall.replace(tzinfo=tz)
    round_trip = aware.astimezone(UTC).astimezone(tz)
    if round_trip.replace(tzinfo=None) != wall:
        aware = (wall + timedelta(hours=1)).replace(tzinfo=tz)
    return aware


_FIXED_STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def next_start(start: datetime, window: str, tz: ZoneInfo) -> datetime:
    if tz.key == "UTC" and window in _FIXED_STEPS:
        return start + _FIXED_STEPS[window]  # no DST: the slow path below gives the same
    if window == "hour":
        return (start.astimezone(UTC) + timedelta(hours=1)).astimezone(tz)
    wall = start.astimezone(tz).replace(tzinfo=None)
    if window == "day":
        wall += timedelta(days=1)
    elif window == "week":
        wall += timedelta(days=7)
    else:
        wall = wall.replace(year=wall.year + wall.month // 12, month=wall.month % 12 + 1)
    return _normalise(wall, tz)


def boundaries(
    window: str, tz: ZoneInfo, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive ``[start, end)`` windows covering ``[start, end)``, aligned in ``tz``."""
    if window not in WINDOWS:
        raise WindowError("window", f"must be one of {', '.join(WINDOWS)}")
    if start >= end:
        raise WindowError("from", "must be before 'to'")
    current = floor_local(start, window, tz)
    count = 0
    while current < end:
        following = next_start(current, window, tz)
        for moment in (current, following):
            offset = moment.utcoffset()
            if offset is None or offset.total_seconds() % 3600:
                raise WindowError("tz", f"{tz.key} has an offset that is not a whole hour")
        count += 1
        if count > MAX_BUCKETS[window]:
            raise WindowError("to", f"at most {MAX_BUCKETS[window]} {window} buckets per request")
        yield current, following
        current = following


def hour_index(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() // 3600)


def bucketise(
    hours: Sequence[tuple[int, UsageStats]],
    window: str,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    *,
    bounds: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[Bucket]:
    """Merge hourly rows (sorted by hour) into the windows between ``start`` and ``end``.

    ``bounds``: ``boundaries(window, tz, start, end)`` if the caller has them already.
    """
    if bounds is None:
        bounds = list(boundaries(window, tz, start, end))
    buckets = [Bucket(s, e, UsageStats()) for s, e in bounds]
    position = 0
    for bucket in buckets:
        first, last = hour_index(bucket.start), hour_index(bucket.end)
        while position < len(hours) and hours[position][0] < first:
            position += 1
        while position < len(hours) and hours[position][0] < last:
            bucket.stats.merge(hours[position][1])
            position += 1
    return buckets
