"""``StatsRow``: a statistics table's columns after its key, with one conversion each way.

Rows travel as plain tuples from the database (a 90-day series reads 91 per request, and a
named tuple per row would cost more than the rest of presenting it); ``StatsRow``'s fields
name their positions (``HISTOGRAM``, ``P50``, ...) wherever a row is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from domain import latency
from domain.usage_stats import UsageStats

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

QUANTILES = (0.5, 0.95, 0.99)
_hist_encoder = msgspec.msgpack.Encoder()
_hist_decoder = msgspec.msgpack.Decoder(dict[int, int])
decode_histogram = _hist_decoder.decode  # a row's ``histogram`` bytes as {bucket: count}


class StatsRow(NamedTuple):
    """The values of ``tables.STATS_COLUMNS``, in Python types."""

    requests: int
    successes: int
    failures: int
    rejected: int
    total_us: int
    min_us: int | None
    max_us: int | None
    input_bytes: int
    output_bytes: int
    histogram: Any  # MessagePack bytes; in a row of sums, the array of the rows' encodings
    last_at: datetime | None
    p50_bucket: int | None  # the histogram buckets of ``QUANTILES`` (NULL: not stored)
    p95_bucket: int | None
    p99_bucket: int | None


HISTOGRAM = StatsRow._fields.index("histogram")
LAST_AT = StatsRow._fields.index("last_at")
P50 = StatsRow._fields.index("p50_bucket")
# A named tuple's generated __new__ is Python code: tuple.__new__ builds a row in half the time
# (a rebuild builds one per key it touches).
_new_row = tuple.__new__


def row_of(stats: UsageStats, *, percentiles: bool) -> StatsRow:
    """``stats`` as a row; ``percentiles`` False leaves the buckets NULL (readers compute
    them from the histogram: ``usage.writer`` says which tables store them)."""
    histogram = dict(sorted(stats.histogram.items()))  # canonical bytes
    buckets = (
        latency.sorted_percentile_buckets(list(histogram), list(histogram.values()), QUANTILES)
        if percentiles else (None, None, None)
    )
    return _new_row(StatsRow, (
        stats.requests, stats.successes, stats.failures, stats.rejected, stats.total_us,
        stats.min_us, stats.max_us, stats.input_bytes, stats.output_bytes,
        _hist_encoder.encode(histogram), stats.last_at, *buckets,
    ))


def stats_of(row: Sequence[Any]) -> UsageStats:
    """The inverse of ``row_of``; a row of sums (``HISTOGRAM`` holds several encodings)
    merges their histograms."""
    encoded = row[HISTOGRAM]
    if isinstance(encoded, bytes | memoryview):
        histogram = _hist_decoder.decode(encoded)
    else:
        histogram = _hist_decoder.decode(encoded[0])
        for more in encoded[1:]:
            latency.merge_into(histogram, _hist_decoder.decode(more))
    return UsageStats(
        requests=row[0], successes=row[1], failures=row[2], rejected=row[3], total_us=row[4],
        min_us=row[5], max_us=row[6], input_bytes=row[7], output_bytes=row[8],
        histogram=histogram, last_at=row[LAST_AT],
    )
