"""Usage figures reach the response bodies field for field (presented positionally)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api import presenters
from domain.usage_stats import UsageStats
from projections.usage import windows
from projections.usage.figures import EMPTY, figures_of, shown_from_row
from projections.usage.rows import row_of
from projections.usage.windows import Bucket

AT = datetime(2026, 11, 2, 8, tzinfo=UTC)


def stats() -> UsageStats:
    s = UsageStats()
    for i, ms in enumerate((12, 40, 7, 300)):
        s.add_request(response_us=ms * 1000, success=i != 1, input_bytes=100 + i,
                      output_bytes=10 * i, occurred_at=AT + timedelta(minutes=i), rejected=False)
    s.add_request(response_us=1, success=True, input_bytes=1, output_bytes=1,
                  occurred_at=AT, rejected=True)
    return s


def test_totals_show_every_figure_under_its_own_name() -> None:
    f = figures_of(stats())
    body = presenters.totals(f)
    assert (body.total_requests, body.successes, body.failures, body.rejected) == (4, 3, 1, 1)
    assert body.success_rate == 0.75
    assert body.avg_response_ms == (12 + 40 + 7 + 300) / 4
    assert (body.min_response_ms, body.max_response_ms) == (7, 300)
    assert (body.p50_response_ms, body.p95_response_ms, body.p99_response_ms) == (
        f.p50_ms, f.p95_ms, f.p99_ms)
    assert f.p50_ms is not None
    assert abs(f.p50_ms - 12) <= 0.12  # within 1 %
    assert (body.input_bytes, body.output_bytes) == (100 + 101 + 102 + 103, 0 + 10 + 20 + 30)
    assert body.last_used_at == AT + timedelta(minutes=3)


def test_a_bucket_shows_the_same_figures_between_its_bounds() -> None:
    f = figures_of(stats())
    body = presenters.bucket(Bucket(AT, AT + timedelta(days=1), f))
    totals = presenters.totals(f)
    assert (body.start, body.end) == (AT, AT + timedelta(days=1))
    assert body.requests == totals.total_requests
    for name in ("successes", "failures", "rejected", "success_rate", "avg_response_ms",
                 "min_response_ms", "max_response_ms", "p50_response_ms", "p95_response_ms",
                 "p99_response_ms", "input_bytes", "output_bytes"):
        assert getattr(body, name) == getattr(totals, name), name


def test_no_usage_shows_zero_counts_and_no_latencies() -> None:
    body = presenters.totals(EMPTY)
    assert (body.total_requests, body.successes, body.failures, body.rejected) == (0, 0, 0, 0)
    assert body.success_rate is body.avg_response_ms is body.p99_response_ms is None
    assert body.last_used_at is None


def test_a_series_presents_stored_rows_as_the_figures_would() -> None:
    midnight = AT.replace(hour=0)
    spans = windows.spans("day", windows.zone("UTC"), midnight, midnight + timedelta(days=3))
    served, rejected_only = stats(), UsageStats()
    rejected_only.add_request(response_us=5, success=False, input_bytes=9, output_bytes=0,
                              occurred_at=AT, rejected=True)
    rows = [row_of(s, percentiles=True) for s in (served, rejected_only)]
    body = presenters.series(spans, {0: shown_from_row(rows[0]), 2: shown_from_row(rows[1])})
    assert body == [
        presenters.bucket(Bucket(spans[0].start, spans[0].end, figures_of(served))),
        presenters.bucket(Bucket(spans[1].start, spans[1].end, EMPTY)),
        presenters.bucket(Bucket(spans[2].start, spans[2].end, figures_of(rejected_only))),
    ]
    assert (body[2].requests, body[2].rejected, body[2].input_bytes) == (0, 1, 0)


def test_requests_of_one_time_show_it_as_every_percentile() -> None:
    one = UsageStats()
    one.add_request(response_us=12_500, success=True, input_bytes=1, output_bytes=1,
                    occurred_at=AT, rejected=False)
    body = presenters.totals(figures_of(one))
    assert body.p50_response_ms == body.p95_response_ms == body.p99_response_ms == 12.5
    same = UsageStats()
    for _ in range(3):
        same.add_request(response_us=7_001, success=True, input_bytes=1, output_bytes=1,
                         occurred_at=AT, rejected=False)
    row = row_of(same, percentiles=True)
    assert shown_from_row(row)[8:11] == (7.001, 7.001, 7.001)
