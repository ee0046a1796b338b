"""A process's copy of what the endpoint reads per call (serving states, key rows): fresh for
``ttl``, then refreshed in the background for a short grace, and read again before use after
that; while the database cannot be read, the copy last read still answers.

Predictions must go on while PostgreSQL is unreachable and must not wait for its connection
timeout, and a change (a deactivation, a revocation) must reach every process within two
seconds even for a key idle for hours: an entry younger than ``ttl`` answers; one younger than
``ttl + grace`` answers while a task of its own refreshes it; an older one is read again
(waiting at most ``wait``), and only a failed or slow read answers with it. A key never read
before waits for the database. Entries for unknown keys (None) live in a smaller LRU of their
own, so made-up keys cannot push real ones out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

log = logging.getLogger("modelledger.serving")

K = TypeVar("K", bound="Hashable")
V = TypeVar("V")

GRACE = 1.0  # with the default ttl of 0.5 s, a change is seen within 1.5 s plus the lag
WAIT = 0.5


class StateUnavailableError(Exception):
    """The database could not be read and nothing was read before."""


class ServingCache(Generic[K, V]):
    def __init__(
        self, ttl: float, max_entries: int, *, max_unknown: int = 10_000,
        grace: float = GRACE, wait: float = WAIT,
    ) -> None:
        self.ttl = ttl
        self.grace = grace
        self.wait = wait
        self._known: _Lru[K, V] = _Lru(max_entries)
        self._unknown: _Lru[K, V] = _Lru(max_unknown)
        self._refreshing: dict[K, asyncio.Task[None]] = {}

    async def get(self, key: K, load: Callable[[K], V]) -> V:
        """The value of ``key``, read with ``load`` (in a thread) as described above."""
        entry = self._known.get(key) or self._unknown.get(key)
        if entry is None:
            try:
                value = await asyncio.to_thread(load, key)
            except Exception as error:
                raise StateUnavailableError(type(error).__name__) from error
            self._store(key, value)
            return value
        fetched, value = entry
        age = time.monotonic() - fetched
        if age < self.ttl:
            return value
        if age < self.ttl + self.grace:
            if key not in self._refreshing:
                self._refreshing[key] = asyncio.create_task(self._refresh(key, load))
            return value
        try:
            value = await asyncio.wait_for(asyncio.to_thread(load, key), self.wait)
        except Exception as error:  # noqa: BLE001 - an outage: the last state read answers
            log.warning("serving from the last state read", extra={"error": type(error).__name__})
        self._store(key, value)  # fresh again either way: the next read waits a ttl
        return value

    async def _refresh(self, key: K, load: Callable[[K], V]) -> None:
        try:
            self._store(key, await asyncio.to_thread(load, key))
        except Exception as error:  # noqa: BLE001 - any failure keeps the last state read
            log.warning("serving from the last state read", extra={"error": type(error).__name__})
        finally:
            del self._refreshing[key]

    def _store(self, key: K, value: V) -> None:
        now = time.monotonic()
        if value is None:
            self._known.pop(key)
            self._unknown.put(key, (now, value))
        else:
            self._unknown.pop(key)
            self._known.put(key, (now, value))


class _Lru(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[float, V] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: K, entry: tuple[float, V]) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)
