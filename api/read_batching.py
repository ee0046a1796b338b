"""Concurrent look-ups of one kind answered by one statement (the DataLoader pattern).

A PostgreSQL query from asyncio costs the API process about 100 µs of CPU whatever it reads
(psycopg's asynchronous wait, the pool, the protocol) and PostgreSQL a few tens more to start a
statement; the rows themselves are cheap. So concurrent requests for, say, model details queue
their keys, and one statement (``WHERE id = ANY(...)``) fetches them all.

Never stale: a key joins only a batch that has not started, so every answer comes from a
statement that began after its request arrived (a write acknowledged before a read starts is
always seen). No waiting either: a key finds a free slot (fewer than ``max_in_flight`` batches
running) and starts its batch at once; only while every slot is busy do keys gather, which is
exactly when one statement for many pays off.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence

K = TypeVar("K", bound="Hashable")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """``load(key)`` answers ``fetch(keys)[key]`` (None when absent), batching concurrent keys."""

    def __init__(
        self,
        fetch: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]],
        *,
        max_batch: int = 100,
        max_in_flight: int = 2,
    ) -> None:
        self.fetch = fetch
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._in_flight = 0
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.batches = 0  # statements run, for tests and curiosity
        self.keys = 0  # keys answered by them

    async def load(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._in_flight < self.max_in_flight:
            self._start_batch()
        return await future

    def _start_batch(self) -> None:
        keys = list(self._waiting)[: self.max_batch]
        batch = {key: self._waiting.pop(key) for key in keys}
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch), name="read-batch")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self.fetch(list(batch))
        except Exception as error:  # noqa: BLE001 - every waiter of the batch learns of it
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
        else:
            self.batches += 1
            self.keys += len(batch)
            for key, futures in batch.items():
                value = found.get(key)
                for future in futures:
                    if not future.done():  # done: the request was cancelled (client gone)
                        future.set_result(value)
        finally:
            self._in_flight -= 1
            while self._waiting and self._in_flight < self.max_in_flight:
                self._start_batch()
