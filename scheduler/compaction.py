"""Usage compaction: raw usage events older than the retention become hourly roll-ups.

Why it is exact (see also ``projections/usage_view.py``):

* A chunk runs while holding the write locks of every projection reading the usage log
  (``usage`` and a rebuild's ``usage__next``), so no projection batch straddles it, and it
  compacts only events at or below the lowest of their positions: every projection existing
  now has counted them.
* The chunk's roll-up of a model-hour takes the notification id of the newest event it
  replaces (raw events, or the model-hour's earlier roll-up, merged in). A projection past
  that id never reads it; a rebuild (or a projection created later) reads the roll-up where
  the raw events were. Either way each request is counted once, and hourly rows are equal.
* Deleting, inserting the roll-ups and recording the compacted usage ids is ONE transaction
  of the event store (``compaction_recorders``): a kill at any point leaves either the raw
  events or their roll-ups, and the rerun continues. Ingest waits for at most that
  transaction; reading, folding and archiving happen before it, without the insert lock.

An event is compacted when both the time it occurred and the time it was recorded are older
than the cutoff, so the scan stops at the first chunk reaching recent recordings; late usage
for an old hour is compacted once its recording is old too (it is counted meanwhile).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.utils import get_topic

from domain.usage import PredictionUsage, hour_of
from domain.usage_rollup import UsageRollup, roll_up, rollup_id
from modelledger.compaction_recorders import Replacement, compaction_recorder
from projections.postgres_store import LOCK_NAMESPACE
from projections.store import NEXT
from projections.usage_view import fold_usage_events
from scheduler import archive

if TYPE_CHECKING:
    from uuid import UUID

    from eventsourcing.persistence import Notification

    from modelledger.bootstrap import Container

log = logging.getLogger("modelledger.scheduler.compaction")

RAW_TOPIC = get_topic(PredictionUsage.Recorded)
CHUNK_SIZE = 20_000
_ROW_OVERHEAD = 16 + 8 + 8  # originator id, version and notification id of a stored row


@dataclass
class CompactionSummary:
    """What a run compacted (or, in a dry run, would compact)."""

    cutoff: datetime
    dry_run: bool = False
    chunks: int = 0
    scanned: int = 0
    events: int = 0
    rollups_written: int = 0
    rollups_merged: int = 0
    models: set[UUID] = field(default_factory=set)
    hours: set[tuple[UUID, int]] = field(default_factory=set)
    bytes_reclaimed: int = 0
    archived_bytes: int = 0
    through: int = 0  # the tracking position the run was bounded by
    deferred: int = 0  # old events left for a later run (a rebuild is behind them)
    longest_lock_s: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "chunks": self.chunks,
            "scanned": self.scanned,
            "events": self.events,
            "models": len(self.models),
            "hours": len(self.hours),
            "rollups_written": self.rollups_written,
            "rollups_merged": self.rollups_merged,
            "bytes_reclaimed": self.bytes_reclaimed,
            "archived_bytes": self.archived_bytes,
            "through": self.through,
            "deferred": self.deferred,
            "longest_lock_s": round(self.longest_lock_s, 4),
            "seconds": round(self.seconds, 3),
        }


Progress = Callable[[int, int], None]  # (last scanned id, bound)


def compact_usage(  # noqa: C901 - one loop whose steps read best together
    container: Container,
    *,
    older_than: timedelta,
    now: datetime | None = None,
    chunk_size: int = CHUNK_SIZE,
    dry_run: bool = False,
    archive_enabled: bool | None = None,
    progress: Progress | None = None,
    max_chunks: int | None = None,
) -> CompactionSummary:
    """Compact usage older than ``older_than`` chunk by chunk; the caller holds the job lock."""
    started = time.monotonic()
    cutoff = (now or datetime.now(UTC)) - older_than
    summary = CompactionSummary(cutoff=cutoff, dry_run=dry_run)
    recorder = compaction_recorder(container.usage_ledger.recorder)
    mapper = container.usage_ledger.mapper
    if archive_enabled is None:
        archive_enabled = container.settings.archive_enabled
    archive_to = archive.archive_dir(container.settings.data_dir)
    after = 0
    while max_chunks is None or summary.chunks < max_chunks:
        with _usage_positions_locked(container) as through:
            summary.through = through
            batch = recorder.select_raw(after, through, chunk_size, RAW_TOPIC)
            if not batch:
                break
            after = batch[-1].id
            summary.chunks += 1
            summary.scanned += len(batch)
            old: list[tuple[Notification, PredictionUsage.Recorded]] = []
            reached_recent = False
            for n in batch:
                e = cast("PredictionUsage.Recorded", mapper.to_domain_event(n))
                if e.timestamp >= cutoff:
                    reached_recent = True
                elif e.occurred_at < cutoff:
                    old.append((n, e))
            if old:
                change, planned = _plan(container, recorder, old, through)
                summary.events += len(change.compacted_usage_ids)
                summary.deferred += len(old) - len(change.compacted_usage_ids)
                summary.rollups_written += len(change.rollups)
                summary.rollups_merged += planned.merged
                summary.models |= {m for m, _ in planned.hours}
                summary.hours |= planned.hours
                summary.bytes_reclaimed += planned.bytes_reclaimed
                if not dry_run and change.compacted_usage_ids:
                    kept = set(change.compacted_usage_ids)
                    if archive_enabled:
                        summary.archived_bytes += archive.write(
                            archive_to, [(n.id, e) for n, e in old if e.originator_id in kept]
                        )
                    locked = time.monotonic()
                    recorder.replace(change)
                    summary.longest_lock_s = max(summary.longest_lock_s, time.monotonic() - locked)
        if progress is not None:
            progress(after, summary.through)
        log.info(
            "compaction chunk",
            extra={
                "chunk": summary.chunks,
                "through_id": after,
                "compacted": summary.events,
                "dry_run": dry_run,
            },
        )
        if reached_recent or len(batch) < chunk_size:
            break
    summary.seconds = time.monotonic() - started
    log.info("compaction finished", extra=summary.as_dict())
    return summary


@dataclass
class _Plan:
    hours: set[tuple[UUID, int]]
    merged: int
    bytes_reclaimed: int


def _plan(
    container: Container,
    recorder: Any,
    old: list[tuple[Notification, PredictionUsage.Recorded]],
    through: int,
) -> tuple[Replacement, _Plan]:
    """The chunk's replacement: one roll-up per model-hour, merged with an earlier one."""
    mapper = container.usage_ledger.mapper
    groups: dict[tuple[UUID, int], list[tuple[Notification, PredictionUsage.Recorded]]] = {}
    for n, e in old:
        groups.setdefault((e.model_id, hour_of(e.occurred_at)), []).append((n, e))
    earlier: dict[tuple[UUID, int], tuple[Notification, UsageRollup.Recorded]] = {}
    for n in recorder.select_by_originator([rollup_id(m, h) for m, h in groups]):
        rollup = cast("UsageRollup.Recorded", mapper.to_domain_event(n))
        earlier[(rollup.model_id, rollup.hour)] = (n, rollup)
    delete_ids: list[int] = []
    rollups = []
    compacted: list[UUID] = []
    reclaimed = 0
    merged = 0
    now = datetime.now(UTC)
    for key, members in groups.items():
        previous = earlier.get(key)
        if previous is not None and previous[0].id > through:
            continue  # a rebuild has not read the earlier roll-up yet: merge it later
        folded: list[object] = [e for _, e in members]
        ids = [n.id for n, _ in members]
        raw_events = len(members)
        if previous is not None:
            folded.append(previous[1])
            ids.append(previous[0].id)
            raw_events += previous[1].raw_events
            reclaimed += len(previous[0].state) + len(previous[0].topic) + _ROW_OVERHEAD
            merged += 1
        delta = fold_usage_events(folded)
        model_id, hour = key
        event = roll_up(
            model_id=model_id,
            owner_id=delta.model_owner[model_id],
            hour=hour,
            stats=delta.model_hourly[key],
            raw_events=raw_events,
            now=now,
        )
        stored = mapper.to_stored_event(event)
        rollups.append((max(ids), stored))
        delete_ids += ids
        compacted += [e.originator_id for _, e in members]
        reclaimed += sum(len(n.state) + len(n.topic) + _ROW_OVERHEAD for n, _ in members)
        reclaimed -= len(stored.state) + len(stored.topic) + _ROW_OVERHEAD
    change = Replacement(delete_ids=delete_ids, rollups=rollups, compacted_usage_ids=compacted)
    return change, _Plan(set(groups), merged, reclaimed)


@contextmanager
def _usage_positions_locked(container: Container) -> Iterator[int]:
    """Hold the locks of every projection of the usage log; yield their lowest position."""
    store = container.store
    live = sorted(p.name for p in container.projector.projections.values() if p.source == "usage")
    names = sorted({*live, *(name + NEXT for name in live)})
    with store.write(names[0]) as cur:
        if store.backend == "postgres":
            for name in names[1:]:
                cur.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, name)
                )
        cur.execute("SELECT name, position FROM projection_state")
        stored = {str(name): int(position) for name, position in cur.fetchall()}
        positions = [stored.get(name, 0) for name in live]
        positions += [stored[name] for name in names if name.endswith(NEXT) and name in stored]
        yield min(positions, default=0)
