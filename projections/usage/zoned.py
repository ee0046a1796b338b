"""Windows of whole hours that are not whole UTC days (a day, week or month in Europe/Berlin),
merged from a scope's hourly rows with the help of its daily ones.

A window's counts, sums and extremes come from its hourly rows (integers: cheap). Its histogram,
the costly part (a 90-day series in a zone other than UTC merged 2,160 of them), comes from the
UTC days it covers, corrected by the hours at its edges: an edge's hours are added, or, when they
are more than half of their day, that day is added and its other hours subtracted. Histograms
merge by adding counts, so subtracting hours a day row holds is exact, and the answer equals the
hours' own merge (a daily row is folded from the same events as its hours, in the same batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain import latency
from projections.usage.figures import EMPTY, figures_from_row
from projections.usage.rows import QUANTILES, decode_histogram
from projections.usage.windows import DAY, Bucket

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from projections.usage.windows import Span

# An hourly row as ``queries`` reads it for this: hour, the sums and extremes of
# ``rows.StatsRow`` up to ``output_bytes``, the histogram's bytes, last_at.
HourRow = tuple[Any, ...]
_HISTOGRAM, _LAST_AT = 10, 11


class Cover:
    """The UTC days whose histograms are added, and the hours added and subtracted, that
    make up the hours ``first <= hour < end``."""

    __slots__ = ("days", "minus", "plus")

    def __init__(self, first: int, end: int) -> None:
        self.days: list[int] = []
        self.plus: list[int] = []
        self.minus: list[int] = []
        first_day, head = divmod(first, DAY)
        last_day, tail = divmod(end, DAY)
        if first_day == last_day:  # inside one UTC day
            self._part(first_day, first, end)
            return
        if head:
            self._part(first_day, first, (first_day + 1) * DAY)
            first_day += 1
        self.days.extend(range(first_day, last_day))
        if tail:
            self._part(last_day, last_day * DAY, end)

    def _part(self, day: int, first: int, end: int) -> None:
        """The hours ``first <= hour < end`` of UTC day ``day``, the cheaper way: as hours,
        or as the day less its other hours."""
        start, following = day * DAY, (day + 1) * DAY
        if end - first <= 1 + (DAY - (end - first)):
            self.plus.extend(range(first, end))
        else:
            self.days.append(day)
            self.minus.extend((*range(start, first), *range(end, following)))


def histogram_of(
    cover: Cover, days: Mapping[int, bytes], hours: Mapping[int, bytes]
) -> dict[int, int]:
    """The merged histogram of ``cover`` from the encoded day and hour histograms."""
    parts = [days[d] for d in cover.days if d in days]
    parts += [hours[h] for h in cover.plus if h in hours]
    merged = decode_histogram(parts[0]) if parts else {}
    for encoded in parts[1:]:
        latency.merge_into(merged, decode_histogram(encoded))
    less = [hours[h] for h in cover.minus if h in hours]
    for encoded in less:
        for bucket, count in decode_histogram(encoded).items():
            merged[bucket] = merged.get(bucket, 0) - count
    return {b: count for b, count in merged.items() if count} if less else merged


def buckets(
    spans: Sequence[Span], hour_rows: Sequence[HourRow], days: Mapping[int, bytes],
    from_db: Callable[[Any, str], Any],
) -> list[Bucket]:
    """``spans``' figures from ``hour_rows`` (sorted by hour; covering every hour a span's
    cover subtracts; ``last_at`` as stored, whose order is time order, and converted with
    ``from_db`` once per window) and ``days`` (the daily rows' encoded histograms)."""
    hours = {row[0]: row[_HISTOGRAM] for row in hour_rows}
    found = []
    position, count = 0, len(hour_rows)
    for span in spans:
        while position < count and hour_rows[position][0] < span.first_hour:
            position += 1
        first = position
        while position < count and hour_rows[position][0] < span.end_hour:
            position += 1
        if position == first:
            found.append(Bucket(span.start, span.end, EMPTY))
            continue
        rows = hour_rows[first:position]
        if len(rows) == 1:
            histogram = decode_histogram(rows[0][_HISTOGRAM])
        else:
            histogram = histogram_of(Cover(span.first_hour, span.end_hour), days, hours)
        *sums, last_at = _sums(rows)
        found.append(Bucket(span.start, span.end, figures_from_row(
            (*sums, from_db(last_at, "ts"), *latency.percentile_buckets(histogram, QUANTILES)))))
    return found


def _sums(rows: Sequence[HourRow]) -> tuple[Any, ...]:
    """requests .. output_bytes of ``rows`` together, then their latest ``last_at``."""
    columns = list(zip(*rows, strict=True))
    lows = [low for low in columns[6] if low is not None]
    highs = [high for high in columns[7] if high is not None]
    known = [at for at in columns[_LAST_AT] if at is not None]
    return (
        sum(columns[1]), sum(columns[2]), sum(columns[3]), sum(columns[4]), sum(columns[5]),
        min(lows, default=None), max(highs, default=None), sum(columns[8]), sum(columns[9]),
        None, max(known, default=None),
    )
