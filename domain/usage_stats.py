"""``UsageStats``: the mergeable summary of prediction requests that every statistic is read from.

Latencies are summed as integer microseconds so that sums are exact whatever the order of
folding: incremental projection, rebuild and compaction give identical rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domain import latency

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime


def to_micros(response_time_ms: float) -> int:
    return round(response_time_ms * 1000)


@dataclass(slots=True)
class UsageStats:
    """Counts, sums, extremes and a latency histogram of a set of prediction requests.

    ``rejected`` counts traffic to an inactive or deleted model; it is kept out of every
    other field, which describe served requests only.
    """

    requests: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0
    total_us: int = 0
    min_us: int | None = None
    max_us: int | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    histogram: dict[int, int] = field(default_factory=dict)
    last_at: datetime | None = None

    def add_request(
        self,
        *,
        response_us: int,
        success: bool,
        input_bytes: int,
        output_bytes: int,
        occurred_at: datetime,
        rejected: bool,
    ) -> None:
        if self.last_at is None or occurred_at > self.last_at:
            self.last_at = occurred_at
        if rejected:
            self.rejected += 1
            return
        self.requests += 1
        if success:
            self.successes += 1
        else:
            self.failures += 1
        self.total_us += response_us
        if self.min_us is None or response_us < self.min_us:
            self.min_us = response_us
        if self.max_us is None or response_us > self.max_us:
            self.max_us = response_us
        self.input_bytes += input_bytes
        self.output_bytes += output_bytes
        index = latency.bucket_of(response_us)
        self.histogram[index] = self.histogram.get(index, 0) + 1

    @classmethod
    def of_requests(cls, requests: Sequence[Any]) -> UsageStats:
        """``add_request`` over many recorded requests at once, as whole-list operations.

        ``requests`` are usage records (``PredictionUsage.Recorded`` or a struct with the same
        attributes); compaction folds thousands per model-hour through this.
        """
        served = [r for r in requests if not r.rejected]
        micros = [to_micros(r.response_time_ms) for r in served]
        count = len(served)
        successes = sum([r.success for r in served])
        return cls(
            requests=count,
            successes=successes,
            failures=count - successes,
            rejected=len(requests) - count,
            total_us=sum(micros),
            min_us=min(micros) if micros else None,
            max_us=max(micros) if micros else None,
            input_bytes=sum([r.input_bytes for r in served]),
            output_bytes=sum([r.output_bytes for r in served]),
            histogram=dict(Counter(map(latency.bucket_of, micros))),
            last_at=max([r.occurred_at for r in requests]) if requests else None,
        )

    def merge(self, other: UsageStats) -> None:
        """Fold ``other`` into this summary (associative and commutative)."""
        self.requests += other.requests
        self.successes += other.successes
        self.failures += other.failures
        self.rejected += other.rejected
        self.total_us += other.total_us
        if other.min_us is not None and (self.min_us is None or other.min_us < self.min_us):
            self.min_us = other.min_us
        if other.max_us is not None and (self.max_us is None or other.max_us > self.max_us):
            self.max_us = other.max_us
        self.input_bytes += other.input_bytes
        self.output_bytes += other.output_bytes
        latency.merge_into(self.histogram, other.histogram)
        if other.last_at is not None and (self.last_at is None or other.last_at > self.last_at):
            self.last_at = other.last_at


def without(total: UsageStats, part: UsageStats) -> UsageStats:
    """The requests of ``total`` that are not in ``part`` (a subset of them).

    Counts, sums and the histogram subtract exactly. An extreme is exact when ``part`` cannot
    hold it (``part``'s minimum is above the total's, its maximum below), else it is the value
    of the remaining histogram's first or last bucket, within ``latency.RELATIVE_ERROR``, kept
    inside the total's extremes; ``last_at`` likewise is known only when ``part``'s is earlier.
    """
    if not part.requests and not part.rejected:
        return UsageStats(total.requests, total.successes, total.failures, total.rejected,
                          total.total_us, total.min_us, total.max_us, total.input_bytes,
                          total.output_bytes, dict(total.histogram), total.last_at)
    histogram = {
        bucket: left for bucket, count in total.histogram.items()
        if (left := count - part.histogram.get(bucket, 0)) > 0
    }
    requests = total.requests - part.requests
    low = high = None
    if requests and total.min_us is not None and total.max_us is not None:
        low = total.min_us if part.min_us is None or part.min_us > total.min_us else min(
            max(round(latency.bucket_value(min(histogram))), total.min_us), total.max_us)
        high = total.max_us if part.max_us is None or part.max_us < total.max_us else max(
            min(round(latency.bucket_value(max(histogram))), total.max_us), total.min_us)
    last_at = total.last_at if part.last_at is None or (
        total.last_at is not None and part.last_at < total.last_at) else None
    return UsageStats(
        requests=requests,
        successes=total.successes - part.successes,
        failures=total.failures - part.failures,
        rejected=total.rejected - part.rejected,
        total_us=total.total_us - part.total_us,
        min_us=low,
        max_us=high,
        input_bytes=total.input_bytes - part.input_bytes,
        output_bytes=total.output_bytes - part.output_bytes,
        histogram=histogram,
        last_at=last_at,
    )
