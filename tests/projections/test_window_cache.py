"""The span cache is bounded by memory, evicts the least recently used entry, and a hit is the
cached object itself."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from projections.usage import windows
from projections.usage.windows import SPAN_CACHE, entry_bytes, spans, zone

if TYPE_CHECKING:
    from collections.abc import Iterator

START = datetime(2026, 1, 5, tzinfo=UTC)
MONTH_OF_HOURS = timedelta(hours=744)  # the largest hourly series: 744 spans


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    budget = SPAN_CACHE.budget
    SPAN_CACHE.clear()
    yield
    SPAN_CACHE.clear()
    SPAN_CACHE.resize(budget)


def _month_from(hours_later: int) -> windows.Windows:
    start = START + timedelta(hours=hours_later)
    return spans("hour", zone("Europe/Berlin"), start, start + MONTH_OF_HOURS)


def test_varying_from_over_thousands_of_values_never_holds_more_than_the_budget() -> None:
    budget = 256 * 1024
    SPAN_CACHE.resize(budget)
    berlin = zone("Europe/Berlin")
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for hours_later in range(3000):  # the default hourly series (a day) from ever later
            start = START + timedelta(hours=hours_later)
            spans("hour", berlin, start, start + timedelta(hours=24))
            assert SPAN_CACHE.size <= budget
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert held <= budget, f"{held} bytes held for a budget of {budget}"
    assert len(SPAN_CACHE.entries) == budget // entry_bytes(24)  # and the budget is used


def test_the_estimate_is_at_least_the_memory_an_entry_holds() -> None:
    for window, length in [("hour", MONTH_OF_HOURS), ("day", timedelta(days=90)),
                           ("hour", timedelta(hours=1)), ("month", timedelta(days=3000))]:
        SPAN_CACHE.clear()
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            for hours_later in range(20):
                start = START + timedelta(hours=hours_later)
                spans(window, zone("Europe/Berlin"), start, start + length)
            held = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
        assert held <= SPAN_CACHE.size, (window, held, SPAN_CACHE.size)


def test_a_hit_returns_the_cached_object() -> None:
    first = spans("day", zone("UTC"), START + timedelta(minutes=5), START + timedelta(days=90))
    again = spans("day", zone("UTC"), START + timedelta(minutes=40), START + timedelta(days=90))

    assert again is first


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    SPAN_CACHE.resize(3 * entry_bytes(744))
    oldest, middle, newest = _month_from(0), _month_from(1), _month_from(2)
    assert _month_from(0) is oldest  # used again: now the most recent

    _month_from(3)

    assert _month_from(0) is oldest
    assert _month_from(2) is newest
    assert _month_from(1) is not middle  # evicted, computed afresh
    assert SPAN_CACHE.size <= 3 * entry_bytes(744)


def test_an_entry_larger_than_the_budget_is_answered_but_not_kept() -> None:
    SPAN_CACHE.resize(entry_bytes(743))

    found = _month_from(0)

    assert len(found) == 744
    assert SPAN_CACHE.size == 0
    assert _month_from(0) is not found


def test_shrinking_the_budget_evicts_at_once() -> None:
    for hours_later in range(10):
        _month_from(hours_later)

    SPAN_CACHE.resize(2 * entry_bytes(744))

    assert len(SPAN_CACHE.entries) == 2
    assert SPAN_CACHE.size == 2 * entry_bytes(744)
