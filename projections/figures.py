"""``UsageFigures``: what a read shows of a set of requests (sums, extremes, p50/p95/p99).

A statistics row stores its percentiles' histogram buckets next to the histogram
(``tables.STATS_COLUMNS``), so a figure answered by one row (a day of a daily series, a
model's totals) is read without decoding a histogram; only windows spanning several rows
merge histograms (``UsageStats``) and compute the percentiles. Both give the same numbers:
the stored buckets are computed by the same ``latency.percentile_buckets``.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import msgspec

from domain import latency

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from domain.usage_stats import UsageStats

QUANTILES = (0.5, 0.95, 0.99)


class UsageFigures(msgspec.Struct, frozen=True, gc=False):
    """A msgspec Struct: built for every bucket of a series, and its ``__init__`` is C."""

    requests: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0
    total_us: int = 0
    min_us: int | None = None
    max_us: int | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    last_at: datetime | None = None
    p50_us: float | None = None
    p95_us: float | None = None
    p99_us: float | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None

    @property
    def avg_ms(self) -> float | None:
        return self.total_us / self.requests / 1000 if self.requests else None

    @property
    def min_ms(self) -> float | None:
        return None if self.min_us is None else self.min_us / 1000

    @property
    def max_ms(self) -> float | None:
        return None if self.max_us is None else self.max_us / 1000

    @property
    def percentiles_ms(self) -> tuple[float | None, float | None, float | None]:
        """p50, p95 and p99 in milliseconds."""
        return _ms(self.p50_us), _ms(self.p95_us), _ms(self.p99_us)


EMPTY = UsageFigures()


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000


def percentile_buckets(stats: UsageStats) -> list[int | None]:
    """The histogram buckets of ``QUANTILES`` (what a statistics row stores)."""
    return latency.percentile_buckets(stats.histogram, QUANTILES)


def figures_of(stats: UsageStats) -> UsageFigures:
    """Figures computed from a (merged) histogram."""
    return _figures(
        (stats.requests, stats.successes, stats.failures, stats.rejected, stats.total_us,
         stats.min_us, stats.max_us, stats.input_bytes, stats.output_bytes),
        stats.last_at,
        percentile_buckets(stats),
    )


def figures_from_row(values: Sequence[Any]) -> UsageFigures:
    """Figures of one statistics row: ``STATS_COLUMNS`` values in Python types (the histogram,
    at index 9, is not decoded)."""
    return _figures(values[:9], values[10], values[11:14])


def _figures(
    sums: Sequence[Any], last_at: datetime | None, buckets: Sequence[int | None]
) -> UsageFigures:
    requests, successes, failures, rejected, total_us, min_us, max_us, in_bytes, out_bytes = sums
    p50, p95, p99 = buckets
    return UsageFigures(
        requests, successes, failures, rejected, total_us, min_us, max_us, in_bytes, out_bytes,
        last_at, _value(p50), _value(p95), _value(p99),
    )


@cache
def _value(bucket: int | None) -> float | None:
    """``latency.bucket_value``, remembered (a few hundred buckets cover 1 µs to an hour)."""
    return None if bucket is None else latency.bucket_value(bucket)
