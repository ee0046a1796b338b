"""The rollout verdict: is version b worse than version a on the same window, beyond noise?

* Error rate: a one-sided two-proportion z-test (pooled), failures among served requests;
  b is worse when z >= ``Z_CRITICAL`` (1.645: 5 % false alarms when the rates are equal).
* Latency: the p95 of each version's merged histogram is within ``latency.RELATIVE_ERROR``
  (1 %) of the exact one, so b is worse only when its p95 exceeds a's by more than both
  errors together: p95(b) * (1 - 0.01) > p95(a) * (1 + 0.01), a ratio above about 1.0202.
* Fewer than ``MIN_REQUESTS`` served requests on either side: no verdict (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain import latency

if TYPE_CHECKING:
    from domain.usage_stats import UsageStats

Z_CRITICAL = 1.645
MIN_REQUESTS = 30
P95_MARGIN = (1 + latency.RELATIVE_ERROR) / (1 - latency.RELATIVE_ERROR)
METHOD = (
    f"error rate: one-sided two-proportion z-test (pooled), worse when z >= {Z_CRITICAL}; "
    f"p95: worse when p95(b) / p95(a) > {P95_MARGIN:.4f} (each histogram quantile is within "
    f"{latency.RELATIVE_ERROR:.0%}); no verdict with fewer than {MIN_REQUESTS} served "
    "requests on either side"
)


@dataclass(frozen=True)
class Verdict:
    b_worse: bool | None
    error_rate_worse: bool | None
    p95_worse: bool | None
    error_rate_z: float | None
    p95_ratio: float | None
    summary: str


def p95_us(stats: UsageStats) -> float | None:
    return latency.percentile(stats.histogram, 0.95)


def error_rate_z(a: UsageStats, b: UsageStats) -> float | None:
    """The z statistic of b's error rate above a's (None without requests on both sides)."""
    if not a.requests or not b.requests:
        return None
    pooled = (a.failures + b.failures) / (a.requests + b.requests)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / a.requests + 1 / b.requests))
    difference = b.failures / b.requests - a.failures / a.requests
    if spread == 0:  # both all successes or all failures: equal rates
        return 0.0
    return difference / spread


def judge(a: UsageStats, b: UsageStats) -> Verdict:
    """Whether b is worse than a on error rate or p95, by the rules above."""
    z = error_rate_z(a, b)
    pa, pb = p95_us(a), p95_us(b)
    ratio = None if pa is None or pb is None or pa == 0 else pb / pa
    if a.requests < MIN_REQUESTS or b.requests < MIN_REQUESTS:
        return Verdict(None, None, None, z, ratio,
                       f"not enough traffic to judge: {a.requests} and {b.requests} served "
                       f"requests, at least {MIN_REQUESTS} each are needed")
    errors_worse = z is not None and z >= Z_CRITICAL
    slower = ratio is not None and ratio > P95_MARGIN
    reasons = [
        *(["its error rate is higher beyond chance"] if errors_worse else []),
        *([f"its p95 is {ratio:.2f}x version a's"] if slower and ratio is not None else []),
    ]
    summary = ("version b is worse: " + " and ".join(reasons) if reasons
               else "version b is not worse than version a beyond the noise margin")
    return Verdict(errors_worse or slower, errors_worse, slower, z, ratio, summary)
