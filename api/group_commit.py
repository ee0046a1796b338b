"""Group commit for single-record usage ingest.

Each request enqueues its record and waits. One committer task per process takes everything
queued (up to ``max_batch``), checks it with one lookup of the models involved, appends all
valid events in one transaction in a worker thread, and only then answers each waiting request.
While a transaction runs, the next group gathers, so throughput grows with concurrency instead
of being bounded by the event store's serialised writers.

The requests waiting (queued, or in the transaction that runs) are bounded by ``max_queue``:
beyond it a request is answered 503 with Retry-After at once, so a burst larger than the
store can absorb costs no more memory than the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from litestar.concurrency import sync_to_thread

from api.errors import ServiceUnavailableError
from api.metrics import USAGE_INGESTED

if TYPE_CHECKING:
    from services.usage import Outcome, UsageRecord, UsageService, Writer

RETRY_AFTER = 1  # seconds: a group commits in milliseconds, so the queue drains quickly


@dataclass
class _Pending:
    record: UsageRecord
    writer: Writer
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter:
    def __init__(
        self,
        usage: UsageService,
        *,
        max_batch: int = 5_000,
        max_queue: int = 20_000,
        enabled: bool = True,
    ) -> None:
        self.usage = usage
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.enabled = enabled
        self._queue: list[_Pending] = []
        self._committing = 0  # requests in the transaction that runs
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Requests admitted and not yet answered."""
        return len(self._queue) + self._committing

    async def record(self, record: UsageRecord, writer: Writer) -> bool:
        """Record one request once its transaction commits; returns False for a duplicate.

        Raises ``ModelNotFoundError`` or ``ValidationError`` for this record alone, and
        ``ServiceUnavailableError`` when ``max_queue`` requests wait already.
        """
        if not self.enabled:
            return await sync_to_thread(self._record_alone, record, writer)
        if self.waiting >= self.max_queue:
            raise ServiceUnavailableError(
                f"{self.waiting} usage records are waiting to be committed; retry shortly",
                retry_after=RETRY_AFTER,
            )
        wakeup = self._ensure_running()
        pending = _Pending(record, writer)
        self._queue.append(pending)
        wakeup.set()
        return await pending.done

    def _record_alone(self, record: UsageRecord, writer: Writer) -> bool:
        """One transaction per request: the baseline the benchmark compares against."""
        [outcome] = self.usage.record_each([record], [writer])
        if isinstance(outcome, Exception):
            raise outcome
        USAGE_INGESTED.labels("single").inc(outcome)
        return outcome

    def _ensure_running(self) -> asyncio.Event:
        if self._wakeup is None or self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._wakeup), name="group-commit"
            )
        return self._wakeup

    async def _run(self, wakeup: asyncio.Event) -> None:
        while True:
            await wakeup.wait()
            wakeup.clear()
            while self._queue:
                group, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                self._committing = len(group)
                try:
                    outcomes = await sync_to_thread(self._commit_group, group)
                except Exception as error:  # noqa: BLE001 - every waiter learns of the failure
                    for pending in group:
                        if not pending.done.done():
                            pending.done.set_exception(error)
                    continue
                finally:
                    self._committing = 0
                for pending, outcome in zip(group, outcomes, strict=True):
                    if pending.done.done():
                        continue  # the client went away
                    if isinstance(outcome, Exception):
                        pending.done.set_exception(outcome)
                    else:
                        pending.done.set_result(outcome)

    def _commit_group(self, group: list[_Pending]) -> list[Outcome]:
        outcomes = self.usage.record_each([p.record for p in group], [p.writer for p in group])
        USAGE_INGESTED.labels("single").inc(sum(outcome is True for outcome in outcomes))
        return outcomes

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

