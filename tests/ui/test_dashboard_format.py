"""The templates' formatting helpers and the charts' ranges (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.ui import charts
from api.ui import format as fmt
from projections.usage.windows import WindowError

NOW = datetime(2026, 12, 1, 14, 30, 15, 999, tzinfo=UTC)


@pytest.mark.parametrize(("value", "shown"), [
    (fmt.number(1234567), "1,234,567"), (fmt.number(None), fmt.NONE),
    (fmt.ms(3.14159), "3.1 ms"), (fmt.ms(1234.5), "1,234 ms"), (fmt.ms(None), fmt.NONE),
    (fmt.percent(0.9876), "98.8 %"), (fmt.size(9), "9 B"), (fmt.size(2048), "2.0 KiB"),
    (fmt.size(5 * 1024**3), "5.0 GiB"), (fmt.when(NOW), "2026-12-01 14:30 UTC"),
    (fmt.iso("2026-12-01T15:30:00+01:00"), "2026-12-01T14:30:00Z"),
    (fmt.serving(((1, 90), (2, 10))), "v1 90 %, v2 10 %"), (fmt.serving(((3, 100),)), "v3"),
    (fmt.serving(()), fmt.NONE),
])
def test_values_are_shown_for_people(value: str, shown: str) -> None:
    assert value == shown


def test_preset_ranges_end_now_and_span_their_length() -> None:
    chosen = charts.chart_range("7d", None, "Europe/Berlin", now=NOW)
    assert (chosen.bucket, chosen.end) == ("day", NOW.replace(microsecond=0))
    assert (chosen.end - chosen.start).days == 7
    assert chosen.from_text == "2026-11-24T14:30:15Z"


def test_a_custom_range_is_whole_days_in_the_browsers_zone() -> None:
    chosen = charts.chart_range("custom", "week", "Europe/Berlin", first_day="2026-11-02",
                                last_day="2026-11-08")
    assert (chosen.from_text, chosen.to_text) == ("2026-11-01T23:00:00Z",
                                                  "2026-11-08T23:00:00Z")
    assert chosen.form() == {"range": "custom", "bucket": "week", "from": "2026-11-02",
                             "to": "2026-11-08"}


@pytest.mark.parametrize(("first", "last"), [("2026-11-08", "2026-11-02"), ("", "2026-11-02"),
                                             ("2026-13-01", "2026-11-02")])
def test_a_custom_range_needs_two_days_in_order(first: str, last: str) -> None:
    with pytest.raises(WindowError):
        charts.chart_range("custom", None, "UTC", first_day=first, last_day=last)
