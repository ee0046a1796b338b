"""Windows: the cached hour spans are exactly the windows computed afresh for any range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.usage.windows import WINDOWS, WindowError, boundaries, hour_index, spans, zone

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
moments = st.datetimes(
    min_value=datetime(2020, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=datetime(2030, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(
    window=st.sampled_from(WINDOWS),
    tz=st.sampled_from(ZONES),
    start=moments,
    length=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=400)),
)
def test_spans_are_the_windows_of_the_exact_range(
    window: str, tz: str, start: datetime, length: timedelta
) -> None:
    def fresh() -> list[tuple[datetime, datetime, int, int]]:
        return [(s, e, hour_index(s), hour_index(e))
                for s, e in boundaries(window, zone(tz), start, start + length)]

    def cached() -> list[tuple[datetime, datetime, int, int]]:
        return [(s.start, s.end, s.first_hour, s.end_hour)
                for s in spans(window, zone(tz), start, start + length)]

    try:
        expected = fresh()
    except WindowError as error:
        refused = error.parameter
    else:
        assert cached() == expected
        assert cached() == expected  # and again, from the cache
        return
    with pytest.raises(WindowError) as raised:
        cached()
    assert raised.value.parameter == refused


def test_an_empty_range_is_refused_naming_from() -> None:
    moment = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    with pytest.raises(WindowError) as raised:
        spans("day", zone("UTC"), moment, moment - timedelta(minutes=10))
    assert raised.value.parameter == "from"


@pytest.mark.parametrize(("window", "tz", "start", "days", "unit"), [
    ("day", "UTC", datetime(2026, 1, 5, 13, tzinfo=UTC), 90, 24),
    ("week", "UTC", datetime(2026, 1, 5, tzinfo=UTC), 70, 24),
    ("month", "UTC", datetime(2026, 1, 5, tzinfo=UTC), 365, 24),
    ("hour", "UTC", datetime(2026, 1, 5, tzinfo=UTC), 2, 1),
    ("day", "Europe/Berlin", datetime(2026, 1, 5, tzinfo=UTC), 30, 1),
    # London is on UTC in winter only: a winter series reads days, one through summer hours
    ("day", "Europe/London", datetime(2026, 1, 5, tzinfo=UTC), 30, 24),
    ("day", "Europe/London", datetime(2026, 1, 5, tzinfo=UTC), 200, 1),
])
def test_series_of_whole_utc_days_read_the_daily_rows(
    window: str, tz: str, start: datetime, days: int, unit: int
) -> None:
    found = spans(window, zone(tz), start, start + timedelta(days=days))
    assert found.unit == unit
    whole_days = all(s.first_hour % 24 == 0 and s.end_hour % 24 == 0 for s in found)
    assert whole_days == (unit == 24)


@pytest.mark.parametrize("name", ["America", "Etc", "America/", "../../etc/passwd", "", " ",
                                  "x" * 300, "Europe/Berlin\x00", "America/Nowhere"])
def test_a_name_that_is_not_a_zone_is_refused_naming_tz(name: str) -> None:
    with pytest.raises(WindowError) as raised:
        zone(name)
    assert raised.value.parameter == "tz"
    assert len(str(raised.value)) < 120  # a long name is not echoed in full
