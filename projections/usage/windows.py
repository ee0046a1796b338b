"""Hour, day, ISO-week and calendar-month windows over hourly buckets, in any time zone
whose offset is a whole number of hours (so every local boundary is a UTC hour boundary).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec

from config.settings import Settings
from domain.usage_stats import UsageStats
from projections.usage.figures import EMPTY, UsageFigures, figures_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

WINDOWS = ("hour", "day", "week", "month")
DAY = 24  # hours: the unit of the daily statistics tables
MAX_BUCKETS = {"hour": 24 * 31, "day": 731, "week": 260, "month": 120}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
MAX_ZONE_SHOWN = 64  # characters of a refused time zone quoted back in the problem


class WindowError(ValueError):
    """A window, time zone or range that cannot be answered; names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def _whole_hour_zones() -> tuple[str, ...]:
    """The IANA zones whose offsets are whole hours now and in the coming years.

    January and July of each year show a zone's standard and summer offsets. A zone whose
    offset was not whole in the past (Asia/Singapore before 1982) is listed: a range that
    reaches into that time is refused by ``boundaries``.
    """
    year = datetime.now(UTC).year
    moments = [datetime(y, m, 1, tzinfo=UTC) for y in range(year, year + 20) for m in (1, 7)]
    found = []
    for name in available_timezones():
        try:
            tz = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
        offsets = (moment.astimezone(tz).utcoffset() for moment in moments)
        if all(o is not None and not o.total_seconds() % 3600 for o in offsets):
            found.append(name)
    return tuple(sorted(found))


# The zones served, as the API's schema lists them (its tz enum): one is checked against
# them before it is opened, so no name of a directory or a path reaches the tz database.
ZONES = _whole_hour_zones()
_ZONE_SET = frozenset(ZONES)


def zone(name: str) -> ZoneInfo:
    """The zone ``name`` if it is one of ``ZONES``, else a ``WindowError`` naming ``tz``."""
    if name not in _ZONE_SET:
        shown = name if len(name) <= MAX_ZONE_SHOWN else f"{name[:MAX_ZONE_SHOWN]}..."
        raise WindowError("tz", f"{shown!r} is not a time zone with whole-hour offsets")
    return ZoneInfo(name)


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


@dataclass(frozen=True, slots=True)
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
    The key holds those hours as integers: cheaper to hash than aware datetimes, and a hit
    is most of what a cheap series request costs.
    """
    if start >= end:
        raise WindowError("from", "must be before 'to'")
    first = (start - _EPOCH) // _HOUR
    following, rest = divmod(end - _EPOCH, _HOUR)
    if rest:
        following += 1
    key = (window, tz, first, following)
    found = SPAN_CACHE.entries.get(key)
    if found is not None:
        SPAN_CACHE.touch(key)
        return found
    return SPAN_CACHE.add(
        key, _compute(window, tz, _EPOCH + first * _HOUR, _EPOCH + following * _HOUR)
    )


def _compute(window: str, tz: ZoneInfo, first: datetime, following: datetime) -> Windows:
    bounds = boundaries(window, tz, first, following)
    found = Windows(Span(s, e, hour_index(s), hour_index(e)) for s, e in bounds)
    whole_days = found[-1].end_hour % DAY == 0
    found.unit = DAY if whole_days and all(s.first_hour % DAY == 0 for s in found) else 1
    return found


SpanKey = tuple[str, ZoneInfo, int, int]  # window, zone, first hour, the hour after the last


class SpanCache:
    """The spans of recent ranges, least recently used evicted first, within a byte budget.

    Bounded by memory, not by count: an entry is 1 to 744 spans (a 31-day hourly series is
    about 140 KiB), so a count bound either wastes memory or lets one user varying ``from``
    hold hundreds of megabytes (4,096 such entries were 690 MB). A hit is a dict lookup and a
    ``move_to_end``; misses take the lock (requests run on the event loop and in threads).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: OrderedDict[SpanKey, Windows] = OrderedDict()
        self.size = 0  # estimated bytes held (``entry_bytes`` of every entry)
        self._lock = threading.Lock()

    def touch(self, key: SpanKey) -> None:
        # Evicted by another thread since the lookup: the caller still has its answer.
        with contextlib.suppress(KeyError):
            self.entries.move_to_end(key)

    def add(self, key: SpanKey, found: Windows) -> Windows:
        cost = entry_bytes(len(found))
        if cost > self.budget:
            return found
        with self._lock:
            present = self.entries.get(key)
            if present is not None:  # another thread computed it meanwhile
                return present
            while self.entries and self.size + cost > self.budget:
                _, evicted = self.entries.popitem(last=False)
                self.size -= entry_bytes(len(evicted))
            self.entries[key] = found
            self.size += cost
        return found

    def resize(self, budget: int) -> None:
        """Hold at most ``budget`` bytes from now on (evicting at once)."""
        with self._lock:
            self.budget = budget
            while self.entries and self.size > budget:
                _, evicted = self.entries.popitem(last=False)
                self.size -= entry_bytes(len(evicted))

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
            self.size = 0


# Measured with tracemalloc (CPython 3.11, every window and several zones): a span (slotted,
# with its start, its two hour indexes and its place in the tuple; its end is the next span's
# start) 187-212 bytes; an entry's key, tuple, ``unit`` and ``OrderedDict`` link up to 1,500
# more. Rounded up, so that the budget bounds the memory really held.
SPAN_BYTES = 230
ENTRY_BYTES = 1600


def entry_bytes(count: int) -> int:
    """The memory a cached entry of ``count`` spans holds, rounded up."""
    return ENTRY_BYTES + SPAN_BYTES * count


SPAN_CACHE = SpanCache(Settings().window_cache_bytes)


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
