"""The SQLite read store keeps times as text: fixed-width UTC, so text order is time order and
every time reads back as itself, whatever its year (the ingest API accepts any ISO time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from projections.store.base import timestamp_text

_AWARE = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),  # noqa: DTZ001 - made aware below
    timezones=st.just(UTC) | st.builds(lambda m: timezone(timedelta(minutes=m)),
                                       st.integers(-600, 600)),
)


def test_a_year_before_1000_is_zero_padded_and_reads_back() -> None:
    moment = datetime(800, 2, 29, 10, 4, 7, 221617, tzinfo=UTC)
    text = timestamp_text(moment)
    assert text == "0800-02-29T10:04:07.221617+00:00"
    assert datetime.fromisoformat(text) == moment


@given(_AWARE, _AWARE)
def test_text_order_is_time_order_and_every_time_reads_back(a: datetime, b: datetime) -> None:
    ta, tb = timestamp_text(a), timestamp_text(b)
    assert len(ta) == len(tb) == len("2026-12-02T16:30:00.000000+00:00")
    assert (ta < tb) == (a < b)
    assert datetime.fromisoformat(ta) == a
