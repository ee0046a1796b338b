"""A roll-up's API key counts, as a specification: compaction's ``key_counts_of`` summarises a
model-hour's keyed requests, and the usage fold adds a roll-up's counts to the keys exactly as
it adds the raw events they stand for. Pure and in memory."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain.usage import PredictionUsage, record_usage
from domain.usage_rollup import (
    UsageRollup,
    epoch_us,
    from_epoch_us,
    key_counts_of,
    merge_key_counts,
    roll_up,
)
from domain.usage_stats import UsageStats
from projections.usage.fold import KeyUse, fold_usage_events

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
HOUR = 498_224  # whole hours since the Unix epoch at T0
NOW = T0 + timedelta(days=30)
OWNER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
MODEL = uuid.UUID("00000000-0000-4000-8000-000000000001")
KEY_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
KEY_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
_request_ids = itertools.count()


def call(key: str, minute: float, **overrides: Any) -> PredictionUsage.Recorded:
    """A metered call at T0 + ``minute`` by the key named ``key`` ("": a login token)."""
    return record_usage(
        model_id=MODEL, owner_id=OWNER, request_id=f"r-{next(_request_ids)}",
        occurred_at=T0 + timedelta(minutes=minute), response_time_ms=4.0, input_bytes=1,
        output_bytes=1, success=True, api_key_id=key, now=NOW, **overrides,
    )


def rollup_of(raw: list[PredictionUsage.Recorded]) -> UsageRollup.Recorded:
    """The roll-up compaction writes for ``raw`` (one model-hour)."""
    return roll_up(model_id=MODEL, owner_id=OWNER, hour=HOUR, stats=UsageStats.of_requests(raw),
                   raw_events=len(raw), api_keys=key_counts_of(raw), now=NOW)


def mixed_calls() -> list[PredictionUsage.Recorded]:
    """One hour's calls: key A twice (not in time order), key B twice (once spelled in capitals),
    a rejected call by A, and a login token's call, which no key counts."""
    return [
        call(str(KEY_A), 40.000_001),
        call(str(KEY_B), 10),
        call(str(KEY_A), 5),
        call(str(KEY_B).upper(), 30),
        call(str(KEY_A), 20, rejected=True),
        call("", 59),
    ]


def test_a_roll_up_counts_each_key_like_the_raw_events_it_replaces() -> None:
    raw = mixed_calls()

    from_rollup = fold_usage_events([rollup_of(raw)])

    assert from_rollup.keys == fold_usage_events(raw).keys == {
        KEY_A: KeyUse(3, T0 + timedelta(minutes=40.000_001)),
        KEY_B: KeyUse(2, T0 + timedelta(minutes=30)),
    }


def test_key_counts_are_per_key_as_spelled_and_skip_calls_without_a_key() -> None:
    counts = key_counts_of(mixed_calls())

    assert counts == {
        str(KEY_A): (3, epoch_us(T0 + timedelta(minutes=40.000_001))),
        str(KEY_B): (1, epoch_us(T0 + timedelta(minutes=10))),
        str(KEY_B).upper(): (1, epoch_us(T0 + timedelta(minutes=30))),
    }


def test_a_roll_up_and_later_raw_events_of_the_same_key_add_up_in_either_order() -> None:
    early = mixed_calls()
    late = [call(str(KEY_A), 50), call(str(KEY_B), 1)]  # late usage: B's is not its latest

    folded = [fold_usage_events(order) for order in ([rollup_of(early), *late],
                                                      [*late, rollup_of(early)])]

    assert folded[0].keys == folded[1].keys == fold_usage_events([*early, *late]).keys
    assert folded[0].keys[KEY_A] == KeyUse(4, T0 + timedelta(minutes=50))


def test_merging_two_roll_ups_counts_equals_counting_all_their_events() -> None:
    first, second = mixed_calls(), [call(str(KEY_A), 2), call(str(KEY_B).upper(), 45), call("", 1)]
    counts = key_counts_of(first)

    merge_key_counts(counts, key_counts_of(second))

    assert counts == key_counts_of([*first, *second])


def test_a_roll_up_without_keyed_calls_counts_no_key() -> None:
    assert fold_usage_events([rollup_of([call("", 3), call("", 4)])]).keys == {}


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        T0 + timedelta(microseconds=999_999),
        datetime(2026, 3, 29, 2, 30, 0, 1, tzinfo=timezone(timedelta(hours=-7))),
    ],
)
def test_epoch_microseconds_round_trip_exactly(moment: datetime) -> None:
    back = from_epoch_us(epoch_us(moment))
    assert back == moment
    assert back.tzinfo is UTC
