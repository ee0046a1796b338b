"""The projector: folds batches of the event log into projection tables, exactly once.

Each batch is one write transaction of the read store that (1) takes the projection's lock,
(2) reads the tracking position, (3) reads the next events after it, (4) writes the folded
changes and (5) moves the position. A crash anywhere rolls the whole batch back, and two
processors of one projection serialise on the lock, so no event is ever applied twice.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from projections.models.fold import fold_model_events
from projections.models.writer import write_model_patches
from projections.store.base import NEXT, Cursor, ReadStore
from projections.usage.fold import fold_usage_events
from projections.usage.writer import merge_usage

if TYPE_CHECKING:
    from uuid import UUID

    from eventsourcing.persistence import ApplicationRecorder, Mapper

Progress = Callable[[int, int], None]  # (position, head)


@dataclass(frozen=True)
class EventSource:
    """One event log (an application's notification log) and the mapper that decodes it."""

    name: str
    recorder: ApplicationRecorder
    mapper: Mapper[UUID]

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0


@dataclass(frozen=True)
class Projection:
    """A named fold from one event source into a set of tables."""

    name: str
    source: str
    fold: Callable[[Iterable[object]], Any]
    write: Callable[[ReadStore, Cursor, Any, str, int, int], None]


PROJECTIONS: tuple[Projection, ...] = (
    Projection(
        "models", "registry", fold_model_events,
        lambda store, cur, changes, suffix, _before, _after: write_model_patches(
            store, cur, changes, suffix
        ),
    ),
    Projection(
        "usage", "usage", fold_usage_events,
        merge_usage,
    ),
)


@dataclass(frozen=True)
class _Batch:
    before: int
    after: int
    count: int
    changes: Any


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    source: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class Projector:
    """Runs projections over their event sources into one read store."""

    def __init__(
        self,
        store: ReadStore,
        sources: Mapping[str, EventSource],
        *,
        batch_size: int = 20_000,
        projections: Iterable[Projection] = PROJECTIONS,
    ) -> None:
        self.store = store
        self.sources = dict(sources)
        self.batch_size = batch_size
        self.projections = {p.name: p for p in projections}

    def _fold_next(
        self, projection: Projection, position: int, stop: int | None = None
    ) -> _Batch | None:
        """Read and fold the batch after ``position`` (no lock needed: the fold is pure)."""
        source = self.sources[projection.source]
        notifications = source.recorder.select_notifications(
            position + 1, self.batch_size, stop=stop
        )
        if not notifications:
            return None
        to_domain_event = source.mapper.to_domain_event
        changes = projection.fold([to_domain_event(n) for n in notifications])
        return _Batch(position, notifications[-1].id, len(notifications), changes)

    def _apply(self, cur: Cursor, projection: Projection, suffix: str, batch: _Batch) -> None:
        """Write a folded batch and move the tracking position, in the caller's transaction."""
        projection.write(self.store, cur, batch.changes, suffix, batch.before, batch.after)
        self.store.set_position(cur, projection.name + suffix, batch.after)

    def process_batch(self, cur: Cursor, projection: Projection, suffix: str = "") -> int:
        """Fold the next batch after the tracking position, inside the caller's transaction."""
        batch = self._fold_next(projection, self.store.position(cur, projection.name + suffix))
        if batch is None:
            return 0
        self._apply(cur, projection, suffix, batch)
        return batch.count

    def catch_up(self, name: str, *, progress: Progress | None = None) -> int:
        """Process batches until the projection reaches the head seen at the start."""
        projection = self.projections[name]
        head = self.sources[projection.source].head()
        return self._pipeline(projection, "", name, head, progress)

    def _pipeline(
        self,
        projection: Projection,
        suffix: str,
        lock_name: str,
        head: int,
        progress: Progress | None,
    ) -> int:
        """Fold batches in a reader thread while this thread writes the previous one.

        The fold is pure, so reading ahead is safe; each write transaction still checks under
        the lock that the tracking position is where the batch starts, and stops the pipeline
        when another processor moved it (the caller's next call continues from there). Folding
        (Python) and writing (mostly the database) then overlap on the two cores.
        """
        tracking = projection.name + suffix
        with self.store.read() as cur:
            start = self.store.position(cur, tracking)
        if start >= head:
            return 0
        if head - start <= self.batch_size:  # one batch: no read-ahead thread needed
            with self.store.write(lock_name) as cur:
                processed = self.process_batch(cur, projection, suffix)
            if progress is not None:
                progress(head, head)
            return processed
        batches: queue.Queue[_Batch | BaseException | None] = queue.Queue(maxsize=2)
        stop = threading.Event()
        reader = threading.Thread(
            target=self._read_ahead, args=(projection, start, head, batches, stop),
            name=f"read-ahead-{tracking}", daemon=True,
        )
        reader.start()
        total = 0
        try:
            while (batch := batches.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                with self.store.write(lock_name) as cur:
                    if self.store.position(cur, tracking) != batch.before:
                        break  # another processor advanced it: nothing here is applied twice
                    self._apply(cur, projection, suffix, batch)
                total += batch.count
                if progress is not None:
                    progress(batch.after, head)
        finally:
            stop.set()
            while reader.is_alive():
                with contextlib.suppress(queue.Empty):
                    batches.get(timeout=0.05)
        return total

    def _read_ahead(
        self,
        projection: Projection,
        start: int,
        head: int,
        batches: queue.Queue[_Batch | BaseException | None],
        stop: threading.Event,
    ) -> None:
        position = start
        try:
            while not stop.is_set() and position < head:
                batch = self._fold_next(projection, position, stop=head)
                if batch is None:
                    break
                batches.put(batch)
                position = batch.after
        except BaseException as error:  # noqa: BLE001 - handed to the writing thread
            batches.put(error)
            return
        batches.put(None)

    def catch_up_all(self) -> int:
        return sum(self.catch_up(name) for name in self.projections)

    def status(
        self, positions: Mapping[str, tuple[int, int, str]] | None = None
    ) -> list[ProjectionStatus]:
        """Position, head and lag of every projection (``positions`` if already read)."""
        positions = self.store.positions() if positions is None else positions
        heads = {name: source.head() for name, source in self.sources.items()}
        return [
            ProjectionStatus(
                name=p.name,
                source=p.source,
                position=positions.get(p.name, (0, 0, ""))[0],
                head=heads[p.source],
            )
            for p in self.projections.values()
        ]

    def rebuild(self, name: str, *, progress: Progress | None = None) -> int:
        """Rebuild from position 0 into tables aside, then swap them in atomically.

        Readers keep reading the live tables until the swap commits; the live projection keeps
        following the log meanwhile, and the final catch-up runs under its lock.
        """
        projection = self.projections[name]
        head = self.sources[projection.source].head()
        with self.store.write(name + NEXT) as cur:
            self.store.drop_tables(cur, name, NEXT)
            self.store.create_tables(cur, name, NEXT)
        total = self._pipeline(projection, NEXT, name + NEXT, head, progress)
        with self.store.write(name) as cur:
            while (processed := self.process_batch(cur, projection, NEXT)) > 0:
                total += processed
            self.store.swap_in(cur, name)
        return total
