"""Concurrent look-ups of one kind answered by one statement (the DataLoader pattern).

A PostgreSQL query from asyncio costs the API process about 100 µs of CPU whatever it reads
(psycopg's asynchronous wait, the pool, the protocol) and PostgreSQL a few tens more to start a
statement; the rows themselves are cheap. So concurrent requests for, say, model details queue
their keys, and one statement (``WHERE id = ANY(...)``) fetches them all.

Never stale: a key joins only a batch that has not started, so every answer comes from a
statement that began after its request arrived (a write acknowledged before a read starts is
always seen). No waiting either: a key finds a free slot (fewer than ``max_in_flight`` batches
running) and starts its batch at once; only while every slot is busy do keys gather, which is
exactly when one statement for many pays off. Nor does one request's key fail another's: a
shared statement that fails is run again for each key alone.
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
        isolate: Callable[[Exception], bool] = lambda _: True,
    ) -> None:
        self.fetch = fetch
        # Whether a failure may be one key's doing, so that each key is worth asking alone
        # (not when the database is out of reach: that would only double the wait).
        self.isolate = isolate
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
        except Exception as error:  # noqa: BLE001 - the waiters learn of it
            if len(batch) == 1 or not self.isolate(error):
                for futures in batch.values():
                    _fail(futures, error)
            else:
                # One key can make the shared statement fail (a value the database rejects):
                # each key is asked alone, so only a request whose own key fails sees it.
                await asyncio.gather(*(self._run_alone(key, batch[key]) for key in batch))
        else:
            self.batches += 1
            self.keys += len(batch)
            for key, futures in batch.items():
                _answer(futures, found.get(key))
        finally:
            self._in_flight -= 1
            while self._waiting and self._in_flight < self.max_in_flight:
                self._start_batch()

    async def _run_alone(self, key: K, futures: list[asyncio.Future[V | None]]) -> None:
        if all(future.done() for future in futures):
            return  # every request for it was cancelled meanwhile
        try:
            found = await self.fetch([key])
        except Exception as error:  # noqa: BLE001 - its own waiters learn of it
            _fail(futures, error)
        else:
            self.batches += 1
            self.keys += 1
            _answer(futures, found.get(key))


def _answer(futures: list[asyncio.Future[V | None]], value: V | None) -> None:
    for future in futures:
        if not future.done():  # done: the request was cancelled (client gone)
            future.set_result(value)


def _fail(futures: list[asyncio.Future[V | None]], error: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
