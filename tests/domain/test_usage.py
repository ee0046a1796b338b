"""Usage records and the latency histogram, without any I/O."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import latency
from domain.errors import ValidationError
from domain.usage import record_usage, usage_id
from domain.usage_stats import UsageStats, to_micros, without

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def usage(**overrides: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "model_id": uuid.uuid4(), "owner_id": uuid.uuid4(), "request_id": "r-1",
        "occurred_at": NOW, "response_time_ms": 12.5, "input_bytes": 10, "output_bytes": 20,
        "success": True, "now": NOW,
    }
    values.update(overrides)
    return record_usage(**values)  # type: ignore[arg-type]


class TestRecordUsage:
    def test_same_request_on_the_same_model_has_the_same_id(self) -> None:
        model = uuid.uuid4()
        assert usage(model_id=model).originator_id == usage(model_id=model).originator_id
        assert usage_id(model, "a") != usage_id(model, "b")
        assert usage_id(model, "a") != usage_id(uuid.uuid4(), "a")

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("request_id", ""),
            ("response_time_ms", -1.0),
            ("response_time_ms", math.nan),
            ("input_bytes", -1),
            ("status_code", 42),
            ("ip", "not-an-ip"),
            ("occurred_at", NOW + timedelta(hours=1)),
            ("occurred_at", datetime(2026, 1, 1)),  # noqa: DTZ001 - the naive time is the point
        ],
    )
    def test_invalid_values_are_rejected_naming_the_field(self, field: str, value: object) -> None:
        with pytest.raises(ValidationError) as error:
            usage(**{field: value})
        assert error.value.field == field

    def test_occurred_at_is_stored_in_utc(self) -> None:
        local = NOW.astimezone(datetime.now().astimezone().tzinfo)
        assert usage(occurred_at=local).occurred_at.tzinfo is UTC


class TestLatencyHistogram:
    @given(st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=300),
           st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]))
    def test_percentile_is_within_the_stated_relative_error(
        self, values: list[int], q: float
    ) -> None:
        histogram: dict[int, int] = {}
        for v in values:
            index = latency.bucket_of(v)
            histogram[index] = histogram.get(index, 0) + 1
        exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
        estimate = latency.percentile(histogram, q)
        assert estimate is not None
        assert abs(estimate - exact) <= latency.RELATIVE_ERROR * exact + 1e-9

    @given(st.dictionaries(st.integers(-1, 2_000), st.integers(0, 50), max_size=40),
           st.lists(st.sampled_from([0.01, 0.5, 0.9, 0.95, 0.99, 1.0]), min_size=1, max_size=4))
    def test_percentiles_agree_with_single_percentile(
        self, histogram: dict[int, int], qs: list[float]
    ) -> None:
        assert latency.percentiles(histogram, qs) == [latency.percentile(histogram, q) for q in qs]

    def test_empty_histogram_has_no_percentile(self) -> None:
        assert latency.percentile({}, 0.5) is None


class TestUsageStats:
    def test_rejected_traffic_is_counted_apart_from_served_requests(self) -> None:
        stats = UsageStats()
        stats.add_request(response_us=1000, success=True, input_bytes=1, output_bytes=2,
                          occurred_at=NOW, rejected=False)
        stats.add_request(response_us=9000, success=False, input_bytes=1, output_bytes=2,
                          occurred_at=NOW, rejected=True)
        assert (stats.requests, stats.rejected, stats.max_us) == (1, 1, 1000)

    def test_merge_is_the_same_as_adding_everything_to_one(self) -> None:
        a, b, both = UsageStats(), UsageStats(), UsageStats()
        for i, target in enumerate([a, b, a, b, b]):
            for s in (target, both):
                s.add_request(response_us=i * 100, success=i % 2 == 0, input_bytes=i,
                              output_bytes=2 * i, occurred_at=NOW + timedelta(minutes=i),
                              rejected=False)
        a.merge(b)
        assert a == both


def test_folding_many_requests_at_once_equals_adding_them_one_by_one() -> None:
    requests = [
        usage(request_id=f"r{i}", response_time_ms=(i * 7.3) % 50, success=i % 3 != 0,
              rejected=i % 5 == 0, input_bytes=i, occurred_at=NOW - timedelta(minutes=i))
        for i in range(40)
    ]
    one_by_one = UsageStats()
    for r in requests:
        one_by_one.add_request(response_us=to_micros(r.response_time_ms), success=r.success,
                               input_bytes=r.input_bytes, output_bytes=r.output_bytes,
                               occurred_at=r.occurred_at, rejected=r.rejected)
    assert UsageStats.of_requests(requests) == one_by_one


class TestWithout:
    """Version 1's figures are the model's minus the other versions' (``without``)."""

    @staticmethod
    def stats(*micros: int, at_minute: int = 0) -> UsageStats:
        found = UsageStats()
        for i, us in enumerate(micros):
            found.add_request(response_us=us, success=i % 2 == 0, input_bytes=1, output_bytes=2,
                              occurred_at=NOW + timedelta(minutes=at_minute + i - 60),
                              rejected=False)
        return found

    def test_counts_sums_and_histogram_subtract_exactly(self) -> None:
        first, second = self.stats(1_000, 2_000, 40_000), self.stats(5_000, 6_000, at_minute=10)
        total = UsageStats()
        total.merge(first)
        total.merge(second)
        left = without(total, second)
        assert (left.requests, left.successes, left.failures, left.total_us, left.input_bytes,
                left.histogram) == (3, first.successes, first.failures, first.total_us, 3,
                                    first.histogram)

    def test_an_extreme_the_part_cannot_hold_is_exact_else_within_one_percent(self) -> None:
        first, second = self.stats(1_000, 40_000), self.stats(500, 5_000, at_minute=10)
        total = UsageStats()
        total.merge(first)
        total.merge(second)
        left = without(total, second)
        assert left.max_us == 40_000  # the part's maximum is lower: the total's is the first's
        assert left.min_us is not None
        assert abs(left.min_us - 1_000) <= 0.01 * 1_000 + 1
        assert left.last_at is None  # the part's last request is the latest: unknown

    def test_nothing_taken_away_leaves_the_total(self) -> None:
        total = self.stats(1_000, 2_000)
        assert without(total, UsageStats()) == total
