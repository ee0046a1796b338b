"""Windows that are not whole UTC days read day rows corrected by their edge hours: the days
added and the hours added and subtracted make up exactly the window's hours, with few hours."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from projections.usage import windows
from projections.usage.windows import DAY
from projections.usage.zoned import Cover


@given(first=st.integers(0, DAY * 400), length=st.integers(1, DAY * 40))
def test_a_cover_adds_and_subtracts_to_exactly_its_hours(first: int, length: int) -> None:
    cover = Cover(first, first + length)
    counted: Counter[int] = Counter()
    for day in cover.days:
        counted.update(range(day * DAY, (day + 1) * DAY))
    counted.update(cover.plus)
    counted.subtract(cover.minus)
    assert +counted == Counter(range(first, first + length))
    assert len(cover.plus) + len(cover.minus) <= DAY  # at most 12 hours at either edge


def test_a_berlin_day_is_one_utc_day_less_one_hour_plus_one_hour() -> None:
    spans = windows.spans("day", windows.zone("Europe/Berlin"),
                          datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC))
    cover = Cover(spans[1].first_hour, spans[1].end_hour)  # 11 January in Berlin
    start = datetime(2026, 1, 10, 23, tzinfo=UTC)
    hour = windows.hour_index(start)
    assert (cover.days, cover.plus, cover.minus) == ([hour // DAY + 1], [hour], [hour + DAY])
    assert spans[1].start == start
    assert spans[1].end - spans[1].start == timedelta(days=1)
