"""``UsageFigures``: what a read shows of a set of requests (sums, extremes, p50/p95/p99).

A figure answered by one row that stores its percentile buckets is read without decoding a
histogram (ARCHITECTURE.md, "one stored row per window"); other figures go through
``UsageStats`` and compute the percentiles with the same ``latency`` functions.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import astuple

from domain import latency
from projections.usage.rows import LAST_AT, QUANTILES, stats_of

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from domain.usage_stats import UsageStats


class UsageFigures(msgspec.Struct, frozen=True, gc=False):
    """The figures as shown (milliseconds, a rate), then the exact sums they come from.

    The shown fields come first and in the order of the API's usage bodies, so a presenter
    passes ``astuple(figures)[:n]`` positionally (a 90-day series shows 91 of these).
    """

    requests: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0
    success_rate: float | None = None
    avg_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    last_at: datetime | None = None
    total_us: int = 0
    min_us: int | None = None
    max_us: int | None = None


EMPTY = UsageFigures()
SHOWN = UsageFigures.__struct_fields__.index("last_at")  # the shown fields come first
NOTHING_SHOWN: tuple[Any, ...] = astuple(EMPTY)[:SHOWN]


def percentile_buckets(stats: UsageStats) -> list[int | None]:
    """The histogram buckets of ``QUANTILES`` (what a statistics row stores)."""
    return latency.percentile_buckets(stats.histogram, QUANTILES)


def figures_of(stats: UsageStats) -> UsageFigures:
    """Figures computed from a (merged) histogram."""
    return figures_from_row((
        stats.requests, stats.successes, stats.failures, stats.rejected, stats.total_us,
        stats.min_us, stats.max_us, stats.input_bytes, stats.output_bytes, None, stats.last_at,
        *percentile_buckets(stats),
    ))


def figures_from_row(values: Sequence[Any]) -> UsageFigures:
    """Figures of one ``StatsRow`` that stores its percentile buckets (its histogram is not
    read)."""
    requests, last_at = values[0], values[LAST_AT]
    if not requests:  # served requests are the only source of every figure but ``rejected``
        rejected = values[3]
        return UsageFigures(rejected=rejected, last_at=last_at) if rejected or last_at else EMPTY
    return UsageFigures(*shown_from_row(values), *(last_at, *values[4:7]))


def figures_from_sums(values: Sequence[Any]) -> UsageFigures:
    """Figures of several rows summed in SQL (``StatsRow``'s sums and extremes, with the
    array of the rows' histograms, merged here)."""
    return figures_of(stats_of(values))


def shown_from_row(values: Sequence[Any]) -> tuple[Any, ...]:
    """``figures_from_row(values)``'s first ``SHOWN`` fields, without building the figures (a
    90-day series presents 91 rows: the presenter takes these positionally)."""
    (requests, successes, failures, rejected, total_us, min_us, max_us, in_bytes, out_bytes,
     _, _, p50, p95, p99) = values
    if not requests:
        return (0, 0, 0, rejected, *NOTHING_SHOWN[4:]) if rejected else NOTHING_SHOWN
    low, high = min_us / 1000, max_us / 1000
    if low == high:  # one request (a sparse day's usual row), or equal ones: exact
        p50_ms = p95_ms = p99_ms = low
    else:  # within 1 % (a bucket's value; not clamped to the extremes: a series shows 91)
        p50_ms, p95_ms, p99_ms = _ms(p50), _ms(p95), _ms(p99)
    return (
        requests, successes, failures, rejected, successes / requests,
        total_us / requests / 1000, low, high, p50_ms, p95_ms, p99_ms, in_bytes, out_bytes,
    )


@cache
def _ms(bucket: int) -> float:
    """A percentile bucket's value in milliseconds, remembered (a few hundred buckets cover
    1 µs to an hour). A row with requests has all three buckets."""
    return latency.bucket_value(bucket) / 1000
