"""The ``usage`` projection's fold, as a specification: usage events in, ``UsageStats`` deltas out.

Pure and in memory: the events come from ``record_usage`` and ``roll_up``, as ingest and
compaction build them, and no database is involved.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain import latency
from domain.model import Model
from domain.usage import PredictionUsage, record_usage
from domain.usage_rollup import roll_up
from domain.usage_stats import UsageStats
from projections.usage.fold import UsageDelta, fold_usage_events

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
HOUR = 498_224  # whole hours since the Unix epoch at T0, 2026-11-02 08:00 UTC
DAY = 20_759  # HOUR // 24: the UTC day 2026-11-02
NOW = T0 + timedelta(days=30)  # when the requests are recorded: none is in the future
MINUTE = timedelta(minutes=1)

OWNER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
OTHER_OWNER = uuid.UUID("00000000-0000-4000-8000-0000000000bb")
MODEL = uuid.UUID("00000000-0000-4000-8000-000000000001")
SIBLING_MODEL = uuid.UUID("00000000-0000-4000-8000-000000000002")  # also OWNER's
OTHER_MODEL = uuid.UUID("00000000-0000-4000-8000-000000000003")  # OTHER_OWNER's

TABLES = (
    "model_hourly", "owner_hourly", "model_daily", "owner_daily", "model_totals", "owner_totals",
)
VERSION_TABLES = ("version_hourly", "version_daily", "version_totals")
_request_ids = itertools.count()


def usage(
    *,
    model_id: uuid.UUID = MODEL,
    owner_id: uuid.UUID = OWNER,
    occurred_at: datetime = T0 + 25 * MINUTE,
    **overrides: Any,
) -> PredictionUsage.Recorded:
    """A recorded request (a new request id each time): 12.5 ms, 10 bytes in, 20 out, success."""
    values: dict[str, Any] = {
        "request_id": f"r-{next(_request_ids)}", "response_time_ms": 12.5,
        "input_bytes": 10, "output_bytes": 20, "success": True, "now": NOW,
    }
    values.update(overrides)
    return record_usage(model_id=model_id, owner_id=owner_id, occurred_at=occurred_at, **values)


def merged(*deltas: UsageDelta) -> UsageDelta:
    """What the tables hold after the deltas are applied one after another: rows merge."""
    total = UsageDelta()
    for delta in deltas:
        for table in (*TABLES, *VERSION_TABLES):
            rows = getattr(total, table)
            for key, stats in getattr(delta, table).items():
                rows.setdefault(key, UsageStats()).merge(stats)
        total.model_owner.update(delta.model_owner)
    return total


def mixed_usage() -> list[PredictionUsage.Recorded]:
    """Requests of three models and two owners over several hours and two days."""
    return [
        usage(occurred_at=T0 + 5 * MINUTE, response_time_ms=3.2),
        usage(occurred_at=T0 + 50 * MINUTE, response_time_ms=250.0, success=False),
        usage(occurred_at=T0 + 61 * MINUTE, response_time_ms=0.0),
        usage(occurred_at=T0 + 30 * MINUTE, response_time_ms=1200.75, input_bytes=5000),
        usage(occurred_at=T0 + timedelta(hours=16, minutes=30)),  # 00:30 the next day
        usage(model_id=SIBLING_MODEL, occurred_at=T0 + 10 * MINUTE),
        usage(model_id=SIBLING_MODEL, occurred_at=T0 + 20 * MINUTE, rejected=True),
        usage(model_id=OTHER_MODEL, owner_id=OTHER_OWNER, occurred_at=T0 + 2 * 60 * MINUTE),
        usage(occurred_at=T0 + 40 * MINUTE, rejected=True, success=False),
    ]


ONE_REQUEST = UsageStats(
    requests=1,
    successes=1,
    failures=0,
    rejected=0,
    total_us=12_500,
    min_us=12_500,
    max_us=12_500,
    input_bytes=10,
    output_bytes=20,
    histogram={latency.bucket_of(12_500): 1},
    last_at=T0 + 25 * MINUTE,
)


class TestWhereARequestLands:
    @pytest.mark.parametrize(
        ("table", "key"),
        [
            ("model_hourly", (MODEL, HOUR)),
            ("owner_hourly", (OWNER, HOUR)),
            ("model_daily", (MODEL, DAY)),
            ("owner_daily", (OWNER, DAY)),
            ("model_totals", MODEL),
            ("owner_totals", OWNER),
        ],
        ids=TABLES,
    )
    def test_one_request_is_counted_once_in_each_table_under_its_key(
        self, table: str, key: object
    ) -> None:
        assert getattr(fold_usage_events([usage()]), table) == {key: ONE_REQUEST}

    def test_version_1_adds_no_version_rows(self) -> None:
        delta = fold_usage_events([usage(), usage(model_version=1)])
        assert (delta.version_hourly, delta.version_daily, delta.version_totals) == ({}, {}, {})
        assert delta.model_hourly[MODEL, HOUR].requests == 2

    def test_another_version_is_counted_in_the_model_and_in_its_own_rows(self) -> None:
        delta = fold_usage_events([usage(), usage(model_version=2)])
        assert delta.model_hourly[MODEL, HOUR].requests == 2
        assert delta.version_hourly == {(MODEL, 2, HOUR): ONE_REQUEST}
        assert delta.version_daily == {(MODEL, 2, DAY): ONE_REQUEST}
        assert delta.version_totals == {(MODEL, 2): ONE_REQUEST}

    def test_the_delta_names_each_models_owner(self) -> None:
        delta = fold_usage_events(mixed_usage())
        assert delta.model_owner == {
            MODEL: OWNER, SIBLING_MODEL: OWNER, OTHER_MODEL: OTHER_OWNER,
        }

    def test_a_request_in_the_last_microsecond_of_an_hour_lands_in_that_hour(self) -> None:
        late, next_hour = T0 + 60 * MINUTE - timedelta(microseconds=1), T0 + 60 * MINUTE
        delta = fold_usage_events([usage(occurred_at=late), usage(occurred_at=next_hour)])
        assert {key: stats.requests for key, stats in delta.model_hourly.items()} == {
            (MODEL, HOUR): 1, (MODEL, HOUR + 1): 1,
        }

    def test_two_hours_of_one_day_make_two_hour_rows_and_one_day_row(self) -> None:
        delta = fold_usage_events(
            [usage(occurred_at=T0), usage(occurred_at=T0 + 3 * 60 * MINUTE)]
        )
        assert sorted(delta.model_hourly) == [(MODEL, HOUR), (MODEL, HOUR + 3)]
        assert {key: stats.requests for key, stats in delta.model_daily.items()} == {
            (MODEL, DAY): 2,
        }

    def test_a_request_after_midnight_utc_lands_in_the_next_day(self) -> None:
        before = datetime(2026, 11, 2, 23, 59, tzinfo=UTC)
        after = datetime(2026, 11, 3, 0, 1, tzinfo=UTC)
        delta = fold_usage_events([usage(occurred_at=before), usage(occurred_at=after)])
        assert sorted(delta.model_daily) == [(MODEL, DAY), (MODEL, DAY + 1)]
        assert sorted(delta.owner_daily) == [(OWNER, DAY), (OWNER, DAY + 1)]

    def test_the_day_is_the_utc_day_whatever_the_callers_offset(self) -> None:
        early_in_athens = datetime(2026, 11, 3, 1, 30, tzinfo=timezone(timedelta(hours=2)))
        delta = fold_usage_events([usage(occurred_at=early_in_athens)])  # 23:30 UTC on Nov 2
        assert list(delta.model_hourly) == [(MODEL, HOUR + 15)]
        assert list(delta.model_daily) == [(MODEL, DAY)]

    def test_an_owners_rows_add_up_all_of_the_owners_models(self) -> None:
        delta = fold_usage_events(
            [usage(), usage(), usage(model_id=SIBLING_MODEL), usage(model_id=SIBLING_MODEL)]
        )
        assert (delta.model_totals[MODEL].requests, delta.model_totals[SIBLING_MODEL].requests) \
            == (2, 2)
        assert delta.owner_hourly[(OWNER, HOUR)].requests == 4
        assert delta.owner_daily[(OWNER, DAY)].requests == 4
        assert delta.owner_totals[OWNER].requests == 4

    def test_another_owners_requests_stay_out_of_the_owners_rows(self) -> None:
        delta = fold_usage_events([usage(), usage(model_id=OTHER_MODEL, owner_id=OTHER_OWNER)])
        assert {owner: stats.requests for owner, stats in delta.owner_totals.items()} == {
            OWNER: 1, OTHER_OWNER: 1,
        }

    def test_the_totals_add_up_every_hour_and_day(self) -> None:
        delta = fold_usage_events(mixed_usage())
        assert delta.model_totals[MODEL].requests == 5
        assert delta.model_totals[MODEL].rejected == 1
        assert delta.owner_totals[OWNER].requests == 6
        assert delta.owner_totals[OWNER].rejected == 2


class TestWhatIsCounted:
    def test_successes_and_failures_are_counted_apart(self) -> None:
        events = [usage(), usage(), usage(), usage(success=False, status_code=500)]
        stats = fold_usage_events(events).model_totals[MODEL]
        assert (stats.requests, stats.successes, stats.failures) == (4, 3, 1)

    def test_latencies_are_summed_exactly_in_microseconds_with_their_extremes(self) -> None:
        events = [
            usage(response_time_ms=0.001),
            usage(response_time_ms=2500.25),
            usage(response_time_ms=12.5),
        ]
        stats = fold_usage_events(events).model_hourly[(MODEL, HOUR)]
        assert (stats.total_us, stats.min_us, stats.max_us) == (2_512_751, 1, 2_500_250)

    def test_a_latency_is_rounded_to_the_nearest_microsecond(self) -> None:
        events = [usage(response_time_ms=1.005), usage(response_time_ms=0.0006)]
        stats = fold_usage_events(events).model_hourly[(MODEL, HOUR)]
        assert (stats.total_us, stats.min_us, stats.max_us) == (1006, 1, 1005)

    def test_request_and_response_sizes_are_summed(self) -> None:
        events = [usage(input_bytes=100, output_bytes=7), usage(input_bytes=1, output_bytes=2)]
        stats = fold_usage_events(events).model_hourly[(MODEL, HOUR)]
        assert (stats.input_bytes, stats.output_bytes) == (101, 9)

    def test_the_histogram_counts_each_latency_in_its_bucket(self) -> None:
        events = [usage(response_time_ms=12.5), usage(response_time_ms=12.5),
                  usage(response_time_ms=40.0), usage(response_time_ms=0.0)]
        assert fold_usage_events(events).model_hourly[(MODEL, HOUR)].histogram == {
            latency.bucket_of(12_500): 2, latency.bucket_of(40_000): 1, latency.ZERO_BUCKET: 1,
        }

    def test_the_last_request_time_is_the_latest_occurrence_not_the_last_folded(self) -> None:
        events = [usage(occurred_at=T0 + 40 * MINUTE), usage(occurred_at=T0 + 10 * MINUTE)]
        assert fold_usage_events(events).model_hourly[(MODEL, HOUR)].last_at \
            == T0 + 40 * MINUTE

    def test_a_rejected_request_is_counted_as_rejected_not_as_served(self) -> None:
        delta = fold_usage_events([usage(rejected=True, success=False, status_code=409)])
        assert delta.model_hourly == {
            (MODEL, HOUR): UsageStats(rejected=1, last_at=T0 + 25 * MINUTE),
        }

    def test_a_rejected_request_adds_nothing_to_the_served_requests_figures(self) -> None:
        served = usage(response_time_ms=12.5)
        rejected = usage(response_time_ms=900.0, input_bytes=1000, output_bytes=1000,
                         rejected=True)
        stats = fold_usage_events([served, rejected]).model_totals[MODEL]
        assert stats == UsageStats(
            requests=1, successes=1, failures=0, rejected=1,
            total_us=12_500, min_us=12_500, max_us=12_500, input_bytes=10, output_bytes=20,
            histogram={latency.bucket_of(12_500): 1}, last_at=T0 + 25 * MINUTE,
        )


class TestRollUps:
    def test_a_roll_up_folds_like_the_raw_events_it_replaces(self) -> None:
        raw = [
            usage(occurred_at=T0 + 5 * MINUTE, response_time_ms=3.2),
            usage(occurred_at=T0 + 15 * MINUTE, response_time_ms=250.0, success=False),
            usage(occurred_at=T0 + 45 * MINUTE, response_time_ms=0.0, input_bytes=7),
            usage(occurred_at=T0 + 55 * MINUTE, rejected=True),
        ]
        rollup = roll_up(model_id=MODEL, owner_id=OWNER, hour=HOUR, raw_events=len(raw),
                         stats=UsageStats.of_requests(raw), now=NOW)
        from_raw = fold_usage_events(raw)
        assert from_raw.model_totals[MODEL].requests == 3  # the comparison is not of empties
        assert fold_usage_events([rollup]) == from_raw

    def test_a_roll_up_among_other_hours_raw_events_folds_like_all_raw_events(self) -> None:
        events = mixed_usage()
        replaced = [e for e in events if e.model_id == MODEL and e.occurred_at < T0 + 60 * MINUTE]
        assert len(replaced) == 4
        rollup = roll_up(model_id=MODEL, owner_id=OWNER, hour=HOUR, raw_events=len(replaced),
                         stats=UsageStats.of_requests(replaced), now=NOW)
        kept = [e for e in events if e not in replaced]
        assert fold_usage_events([*kept[:2], rollup, *kept[2:]]) == fold_usage_events(events)

    def test_a_roll_up_lands_in_its_own_model_hour(self) -> None:
        rollup = roll_up(model_id=MODEL, owner_id=OWNER, hour=HOUR + 5, raw_events=1,
                         stats=UsageStats.of_requests([usage()]), now=NOW)
        delta = fold_usage_events([rollup])
        assert delta.model_hourly == {(MODEL, HOUR + 5): ONE_REQUEST}
        assert delta.model_owner == {MODEL: OWNER}


class TestBatches:
    @pytest.mark.parametrize("split", [0, 1, 4, 8, 9])
    def test_folding_in_two_batches_and_merging_equals_folding_once(self, split: int) -> None:
        events = mixed_usage()
        once = fold_usage_events(events)
        assert once.owner_totals[OWNER].requests == 6  # the comparison is not of empties
        assert merged(
            fold_usage_events(events[:split]), fold_usage_events(events[split:])
        ) == once

    def test_merging_the_batches_in_either_order_gives_the_same_rows(self) -> None:
        events = mixed_usage()
        first, second = fold_usage_events(events[:4]), fold_usage_events(events[4:])
        assert merged(second, first) == merged(first, second)

    def test_the_order_of_events_in_a_batch_does_not_matter(self) -> None:
        events = mixed_usage()
        assert fold_usage_events(events[::-1]) == fold_usage_events(events)

    def test_an_empty_batch_is_an_empty_delta(self) -> None:
        delta = fold_usage_events([])
        assert not delta
        assert delta == UsageDelta()

    def test_events_other_than_usage_are_ignored(self) -> None:
        model = Model.register(
            model_id=MODEL, owner_id=OWNER, name="resnet", description="", framework="torch",
            endpoint_url="/predict/x", actor="user-1", correlation_id="req-1",
        )
        delta = fold_usage_events(model.collect_events())
        assert not delta
        assert delta == UsageDelta()


class TestKeyUse:
    KEY = uuid.UUID("00000000-0000-4000-8000-0000000000cc")
    OTHER_KEY = uuid.UUID("00000000-0000-4000-8000-0000000000dd")

    def test_each_keys_requests_and_latest_use_are_folded(self) -> None:
        delta = fold_usage_events([
            usage(api_key_id=str(self.KEY), occurred_at=T0 + 3 * MINUTE),
            usage(api_key_id=str(self.KEY), occurred_at=T0 + MINUTE, success=False),
            usage(api_key_id=str(self.OTHER_KEY), model_id=OTHER_MODEL, owner_id=OTHER_OWNER),
            usage(),  # reported usage, or a login token's call: no key
        ])
        assert {k: (u.requests, u.last_at) for k, u in delta.keys.items()} == {
            self.KEY: (2, T0 + 3 * MINUTE), self.OTHER_KEY: (1, T0 + 25 * MINUTE),
        }

    def test_refused_calls_count_as_the_keys_requests_too(self) -> None:
        delta = fold_usage_events([usage(api_key_id=str(self.KEY), rejected=True)])
        assert delta.keys[self.KEY].requests == 1
        assert delta.model_totals[MODEL].requests == 0

    def test_a_key_id_spelled_two_ways_is_one_key(self) -> None:
        delta = fold_usage_events([
            usage(api_key_id=str(self.KEY)), usage(api_key_id=self.KEY.hex),
        ])
        assert list(delta.keys) == [self.KEY]
        assert delta.keys[self.KEY].requests == 2

    def test_a_text_that_is_no_key_id_is_not_counted_and_stops_nothing(self) -> None:
        delta = fold_usage_events([usage(api_key_id="not-a-key"), usage()])
        assert delta.keys == {}
        assert delta.model_totals[MODEL].requests == 2
