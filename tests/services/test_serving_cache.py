"""The endpoint's per-process copy of serving states: fresh, refreshed, read again when old,
and kept through an outage."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.serving_cache import ServingCache, StateUnavailableError


class Table:
    """A stand-in for a projection table read from a thread: a value per key, or an outage."""

    def __init__(self) -> None:
        self.values: dict[str, str | None] = {}
        self.down = False
        self.reads = 0
        self.lock = threading.Lock()

    def load(self, key: str) -> str | None:
        with self.lock:
            self.reads += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.values.get(key)


async def test_a_fresh_entry_is_not_read_again() -> None:
    table, cache = Table(), ServingCache[str, str | None](ttl=10, max_entries=10)
    table.values["k"] = "v1"
    assert await cache.get("k", table.load) == "v1"
    table.values["k"] = "v2"
    assert await cache.get("k", table.load) == "v1"
    assert table.reads == 1


async def test_a_change_is_seen_after_an_idle_period_on_the_first_call() -> None:
    table = Table()
    cache = ServingCache[str, str | None](ttl=0.05, max_entries=10, grace=0.05)
    table.values["k"] = "active"
    assert await cache.get("k", table.load) == "active"
    table.values["k"] = "revoked"
    await asyncio.sleep(0.2)  # idle for longer than ttl + grace
    assert await cache.get("k", table.load) == "revoked"


async def test_within_the_grace_the_old_value_answers_while_a_refresh_reads_the_new() -> None:
    table = Table()
    cache = ServingCache[str, str | None](ttl=0.05, max_entries=10, grace=5)
    table.values["k"] = "old"
    await cache.get("k", table.load)
    table.values["k"] = "new"
    await asyncio.sleep(0.1)
    assert await cache.get("k", table.load) == "old"
    for _ in range(100):
        await asyncio.sleep(0.01)
        if await cache.get("k", table.load) == "new":
            break
    assert await cache.get("k", table.load) == "new"


async def test_during_an_outage_the_last_value_read_answers() -> None:
    table = Table()
    cache = ServingCache[str, str | None](ttl=0.01, max_entries=10, grace=0.01)
    table.values["k"] = "v"
    await cache.get("k", table.load)
    table.down = True
    await asyncio.sleep(0.05)
    assert await cache.get("k", table.load) == "v"
    with pytest.raises(StateUnavailableError):
        await cache.get("never-read", table.load)


async def test_unknown_keys_cannot_push_known_ones_out() -> None:
    table = Table()
    cache = ServingCache[str, str | None](ttl=60, max_entries=2, max_unknown=3)
    table.values.update(a="A", b="B")
    await cache.get("a", table.load)
    await cache.get("b", table.load)
    for i in range(50):
        assert await cache.get(f"junk-{i}", table.load) is None
    reads = table.reads
    assert await cache.get("a", table.load) == "A"
    assert await cache.get("b", table.load) == "B"
    assert table.reads == reads
