"""A mergeable log-bucketed latency histogram (the DDSketch mapping) for percentiles.

A value ``v`` (microseconds) falls in bucket ``ceil(log(v) / log(GAMMA))``; reporting the bucket's
midpoint ``2 * GAMMA**i / (GAMMA + 1)`` is within ``RELATIVE_ERROR`` of every value in it, so a
percentile read from a merged histogram is within 1 % of the exact nearest-rank percentile.
Histograms merge by adding counts, which makes hourly buckets combine into any longer window.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -1  # exact zeros get a bucket of their own


def bucket_of(value_us: int) -> int:
    """The bucket index of a latency in whole microseconds."""
    if value_us <= 0:
        return ZERO_BUCKET
    return math.ceil(math.log(value_us) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative value (microseconds) of a bucket."""
    if index == ZERO_BUCKET:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def merge_into(target: dict[int, int], other: Mapping[int, int]) -> None:
    """Add the counts of ``other`` into ``target``."""
    for index, count in other.items():
        target[index] = target.get(index, 0) + count


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The nearest-rank ``q``-quantile (0 < q <= 1) in microseconds, or None when empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_value(index)
    raise AssertionError("unreachable: rank is at most the total")  # pragma: no cover


def percentiles(histogram: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    """Several nearest-rank quantiles in microseconds (None when the histogram is empty)."""
    buckets = percentile_buckets(histogram, list(qs))
    return [None if index is None else bucket_value(index) for index in buckets]


def percentile_buckets(histogram: Mapping[int, int], qs: Sequence[float]) -> list[int | None]:
    """The bucket of each nearest-rank quantile (None when the histogram is empty)."""
    keys = sorted(histogram)
    return sorted_percentile_buckets(keys, list(map(histogram.__getitem__, keys)), qs)


def sorted_percentile_buckets(
    keys: Sequence[int], counts: Sequence[int], qs: Sequence[float]
) -> list[int | None]:
    """``percentile_buckets`` of a histogram given as its sorted buckets and their counts: the
    first bucket whose running count reaches each rank (``bisect`` over the running counts; a
    model's all-time histogram has ~100 buckets)."""
    if len(keys) == 1:  # most rows of a sparse hour or day: every quantile is that bucket
        return [keys[0] if counts[0] else None] * len(qs)
    running = list(accumulate(counts))
    total = running[-1] if running else 0
    if total == 0:
        return [None] * len(qs)
    return [keys[bisect_left(running, max(1, math.ceil(q * total)))] for q in qs]
