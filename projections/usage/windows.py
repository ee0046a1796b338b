"""Hour, day, ISO-week and calendar-month windows over hourly buckets, in any time zone
whose offset is a whole number of hours (so every local boundary is a UTC hour boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from domain.usage_stats import UsageStats
from projections.usage.figures import EMPTY, UsageFigures, figures_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

WINDOWS = ("hour", "day", "week", "month")
DAY = 24  # hours: the unit of the daily statistics tables
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


class Bucket(msgspec.Struct, gc=False):
    start: datetime
    end: datetime
    figures: UsageFigures


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


def next_start(start: datetime, window: str, tz: ZoneInfo) -> datetime:
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


@dataclass(frozen=True)
class Span:
    """One window ``[start, end)``, also as the hour indexes of its first and following hour."""

    start: datetime
    end: datetime
    first_hour: int
    end_hour: int


class Windows(tuple[Span, ...]):  # noqa: SLOT001 - carries ``unit``
    """``spans``' answer: consecutive windows, and ``unit``: 24 when every window is made of
    whole UTC days (the daily tables answer), else 1 (the hourly ones)."""

    unit: int


def spans(window: str, tz: ZoneInfo, start: datetime, end: datetime) -> Windows:
    """``boundaries(window, tz, start, end)`` as ``Span``s.

    Cached by the hours ``start`` and ``end`` fall in: every window boundary is a UTC hour
    boundary, so nothing finer changes the answer (and ``to`` defaults to now, which moves).
    """
    if start >= end:
        raise WindowError("from", "must be before 'to'")
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    after = end.astimezone(UTC)
    following = after.replace(minute=0, second=0, microsecond=0)
    if following != after:
        following += timedelta(hours=1)
    return _spans(window, tz, first, following)


@lru_cache(maxsize=4096)
def _spans(window: str, tz: ZoneInfo, first: datetime, following: datetime) -> Windows:
    bounds = boundaries(window, tz, first, following)
    found = Windows(Span(s, e, hour_index(s), hour_index(e)) for s, e in bounds)
    whole_days = found[-1].end_hour % DAY == 0
    found.unit = DAY if whole_days and all(s.first_hour % DAY == 0 for s in found) else 1
    return found


def bucketise(
    rows: Sequence[tuple[int, UsageStats]], windows: Sequence[Span], unit: int = 1
) -> list[Bucket]:
    """Merge statistics rows (sorted by index, an index counting ``unit`` hours: hourly or
    daily rows) into ``windows`` (from ``spans``)."""
    buckets = []
    position, count = 0, len(rows)
    for span in windows:
        while position < count and rows[position][0] * unit < span.first_hour:
            position += 1
        first = position
        while position < count and rows[position][0] * unit < span.end_hour:
            position += 1
        if position == first:
            figures = EMPTY
        elif position - first == 1:
            figures = figures_of(rows[first][1])
        else:
            stats = UsageStats()
            for _, row in rows[first:position]:
                stats.merge(row)
            figures = figures_of(stats)
        buckets.append(Bucket(span.start, span.end, figures))
    return buckets
