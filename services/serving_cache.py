"""A process's copy of what the endpoint reads per call (serving states, key grants): fresh for
a few tenths of a second, refreshed in the background after that, and still used while the
database cannot be read.

Predictions must go on while PostgreSQL is unreachable, and must not wait for its connection
timeout: an entry past its time is answered at once and refreshed by a task of its own (one
per key at a time); a failed refresh keeps the entry (a change made meanwhile, such as a
revocation, cannot be read then either). Only a key never read before waits for the database.
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


class StateUnavailableError(Exception):
    """The database could not be read and nothing was read before."""


class ServingCache(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._refreshing: dict[K, asyncio.Task[None]] = {}

    async def get(self, key: K, load: Callable[[K], V]) -> V:
        """The value of ``key``, read with ``load`` (in a thread) when older than ``ttl``."""
        entry = self._entries.get(key)
        if entry is None:
            try:
                value = await asyncio.to_thread(load, key)
            except Exception as error:
                raise StateUnavailableError(type(error).__name__) from error
            self._store(key, value)
            return value
        if time.monotonic() - entry[0] >= self.ttl and key not in self._refreshing:
            task = asyncio.create_task(self._refresh(key, load))
            self._refreshing[key] = task
        return entry[1]

    async def _refresh(self, key: K, load: Callable[[K], V]) -> None:
        try:
            self._store(key, await asyncio.to_thread(load, key))
        except Exception as error:  # noqa: BLE001 - any failure keeps the last state read
            log.warning("serving from the last state read", extra={"error": type(error).__name__})
        finally:
            del self._refreshing[key]

    def _store(self, key: K, value: V) -> None:
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
