"""Usage compaction: raw usage events older than the retention become hourly roll-ups.

Why it is exact (see also ``projections/usage/fold.py``):

* A chunk runs while holding the write locks of every projection reading the usage log
  (``usage`` and a rebuild's ``usage__next``), so no projection batch straddles it, and it
  compacts only events at or below the lowest of their positions: every projection existing
  now has counted them.
* The chunk's roll-up of a model-hour takes the notification id of the newest event it
  replaces (raw events, or the model-hour's earlier roll-up, merged in). A projection past
  that id never reads it; a rebuild (or a projection created later) reads the roll-up where
  the raw events were. Either way each request is counted once, and hourly rows are equal.
  The roll-up carries each API key's requests and latest use too (``api_keys``), so the
  keys' rows (``api_key_usage``) are equal as well.
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
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import msgspec
import msgspec.structs
from eventsourcing.utils import get_topic

from domain.usage import PredictionUsage
from domain.usage_rollup import (
    UsageRollup,
    key_counts_of,
    merge_key_counts,
    roll_up,
    rollup_id,
    stats_of,
)
from domain.usage_stats import UsageStats
from eventstore.compaction import compaction_recorder
from eventstore.mapper import state_fields
from eventstore.ports import Replacement
from projections.store.base import NEXT
from scheduler import archive

if TYPE_CHECKING:
    from pathlib import Path

    from eventsourcing.persistence import Notification, StoredEvent

    from eventstore.ports import CompactionRecorder, RawRow
    from services.container import Container

log = logging.getLogger("modelledger.scheduler.compaction")

RAW_TOPIC = get_topic(PredictionUsage.Recorded)
CHUNK_SIZE = 20_000
# While new usage keeps arriving, the service is answering requests on the same CPUs: chunks
# are at most this large and after each compaction pauses this long per second of work. A
# chunk of 20,000 events kept both cores busy for ~0.6 s (the job's process and its database
# backend), so requests queued behind it; one of 2,000 is a burst of tens of ms, and with the
# pause compaction takes at most a quarter of the time (see ARCHITECTURE.md, "Compaction").
BUSY_CHUNK_SIZE = 2_000
INGEST_YIELD = 3.0
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
    paused_s: float = 0.0  # yielded to concurrent ingest
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
            "paused_s": round(self.paused_s, 3),
            "seconds": round(self.seconds, 3),
        }


Progress = Callable[[int, int], None]  # (last scanned id, bound)


def compact_usage(  # noqa: C901, PLR0915 - one loop and its stop conditions, with the locks
    container: Container,
    *,
    older_than: timedelta,
    now: datetime | None = None,
    chunk_size: int = CHUNK_SIZE,
    dry_run: bool = False,
    archive_enabled: bool | None = None,
    progress: Progress | None = None,
    max_chunks: int | None = None,
    ingest_yield: float = INGEST_YIELD,
    busy_chunk_size: int = BUSY_CHUNK_SIZE,
) -> CompactionSummary:
    """Compact usage older than ``older_than`` chunk by chunk; the caller holds the job lock.

    While new usage arrives between chunks (the service is busy), chunks hold at most
    ``busy_chunk_size`` events and each is followed by a pause of ``ingest_yield`` times its
    work; until the first chunk tells, the service counts as busy."""
    started = time.monotonic()
    cutoff = (now or datetime.now(UTC)) - older_than
    summary = CompactionSummary(cutoff=cutoff, dry_run=dry_run)
    recorder = compaction_recorder(container.usage_log.recorder)
    if archive_enabled is None:
        archive_enabled = container.settings.archive_enabled
    archive_to = archive.archive_dir(container.settings.data_dir) if archive_enabled else None
    after = 0
    head = container.usage_log.recorder.max_notification_id()
    # While ingest is idle, the next chunk is read, decoded and its archive compressed in a
    # second thread while this one is written: the database's half of a chunk overlaps the
    # client's half of the next. While ingest is active, compaction runs one thread and pauses
    # between chunks, leaving the CPUs to ingest. A chunk read ahead is used only when it was
    # read up to a bound no higher than the lowest position at the time it is compacted (a
    # rebuild starting in between lowers it to 0); the next chunk's rows (raw events above
    # ``after``) are untouched by this chunk's transaction.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compaction-read")
    ahead: tuple[Future[tuple[Sequence[RawRow], _Chunk]], int] | None = None

    def read(start: int, through: int, size: int) -> tuple[Sequence[RawRow], _Chunk]:
        rows = recorder.select_raw(start, through, size, RAW_TOPIC)
        chunk = _Chunk(rows, cutoff)
        if archive_to is not None and not dry_run and chunk.groups:
            chunk.prepare_archive()
        return rows, chunk

    # Busy until shown otherwise: a first chunk of the full size would be the longest burst.
    ingest_active = ingest_yield > 0
    try:
        while max_chunks is None or summary.chunks < max_chunks:
            working = time.monotonic()
            size = min(chunk_size, busy_chunk_size) if ingest_active else chunk_size
            with _usage_positions_locked(container) as through:
                summary.through = through
                rows, chunk = _ahead_or_read(ahead, after, through, size, read)
                ahead = None
                if not rows:
                    break
                after = rows[-1][0]
                summary.chunks += 1
                summary.scanned += len(rows)
                last = chunk.reached_recent or len(rows) < size
                if not (last or ingest_active):
                    ahead = (reader.submit(read, after, through, chunk_size), through)
                if chunk.groups:
                    _compact_chunk(
                        container,
                        recorder,
                        chunk,
                        through=through,
                        summary=summary,
                        archive_to=archive_to,
                    )
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
            if last:
                break
            if ingest_yield > 0:
                newest = container.usage_log.recorder.max_notification_id()
                ingest_active = newest != head
                if ingest_active:
                    head = newest
                    pause = (time.monotonic() - working) * ingest_yield
                    summary.paused_s += pause
                    time.sleep(pause)
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.monotonic() - started
    log.info("compaction finished", extra=summary.as_dict())
    return summary


def _ahead_or_read(
    ahead: tuple[Future[tuple[Sequence[RawRow], _Chunk]], int] | None,
    after: int,
    through: int,
    size: int,
    read: Callable[[int, int, int], tuple[Sequence[RawRow], _Chunk]],
) -> tuple[Sequence[RawRow], _Chunk]:
    """The chunk read ahead if it was bounded by at most ``through``, else a fresh read."""
    if ahead is not None:
        future, bound = ahead
        if bound <= through:
            return future.result()
        future.cancel()
        wait([future])
    return read(after, through, size)


class _Chunk:
    """A chunk's raw events decoded, and its old ones grouped by model, version and hour
    (batch indexes)."""

    def __init__(self, rows: Sequence[RawRow], cutoff: datetime) -> None:
        self.rows = rows
        decode = _raw_decoder().decode
        self.events = events = [decode(state) for _, _, state in rows]
        self.hours = hours = [0] * len(events)
        self.kept = kept = bytearray(len(events))  # 1: compacted in this chunk
        self.groups: dict[tuple[str, int, int], list[int]] = {}
        self.reached_recent = False
        self.archive_payloads: dict[date, bytes] = {}
        self.archived_kept: bytes | None = None
        groups = self.groups
        floor = math.floor
        for i, e in enumerate(events):
            if e.timestamp >= cutoff:
                self.reached_recent = True
                continue
            occurred = e.occurred_at
            if occurred >= cutoff:
                continue
            hours[i] = hour = floor(occurred.timestamp() / 3600)  # ``hour_of``, inlined
            kept[i] = 1
            key = (e.model_id, e.model_version, hour)
            members = groups.get(key)
            if members is None:
                groups[key] = [i]
            else:
                members.append(i)

    def ranges(self) -> list[tuple[int, int]]:
        """Notification-id ranges covering exactly the kept rows (rows hold one topic)."""
        rows, kept = self.rows, self.kept
        ranges = []
        start = kept.find(1)
        while start >= 0:
            end = kept.find(0, start)
            last = len(kept) if end < 0 else end
            ranges.append((rows[start][0], rows[last - 1][0]))
            start = -1 if end < 0 else kept.find(1, end)
        return ranges

    def prepare_archive(self) -> None:
        """Encode and compress the archive ahead (valid while ``kept`` does not change)."""
        self.archive_payloads = archive.compress_lines(self.archive_lines())
        self.archived_kept = bytes(self.kept)

    def archive_payloads_now(self) -> dict[date, bytes]:
        """The archive's gzip members per day for the events compacted in this chunk."""
        if self.archived_kept == bytes(self.kept):
            return self.archive_payloads
        return archive.compress_lines(self.archive_lines())  # planning deferred some events

    def archive_lines(self) -> dict[date, bytes]:
        """The kept events as archive records, JSON Lines per UTC day, in id order."""
        rows, events, hours, kept = self.rows, self.events, self.hours, self.kept
        line, values = _line_struct()
        by_day: dict[int, list[msgspec.Struct]] = {}
        day = -1
        lines: list[msgspec.Struct] = []
        for i in _indexes(kept):
            if hours[i] // 24 != day:
                day = hours[i] // 24
                lines = by_day.setdefault(day, [])
            e = events[i]
            lines.append(line(rows[i][1], rows[i][0], e.timestamp, *values(e)))
        return {
            _EPOCH_DAY + timedelta(days=d): _json.encode_lines(found) for d, found in by_day.items()
        }


def _indexes(kept: bytearray) -> Iterator[int]:
    if kept.find(0) < 0:
        yield from range(len(kept))
    else:
        yield from (i for i, k in enumerate(kept) if k)


def _compact_chunk(
    container: Container,
    recorder: CompactionRecorder,
    chunk: _Chunk,
    *,
    through: int,
    summary: CompactionSummary,
    archive_to: Path | None,
) -> None:
    """Plan one roll-up per model-version-hour (merged with an earlier one), archive, replace."""
    mapper = container.usage_log.mapper
    rows, events, groups = chunk.rows, chunk.events, chunk.groups
    keys = {key: (UUID(key[0]), key[1], key[2]) for key in groups}
    earlier: dict[tuple[UUID, int, int], tuple[Notification, UsageRollup.Recorded]] = {}
    for n in recorder.select_by_originator([rollup_id(m, h, v) for m, v, h in keys.values()]):
        rollup = cast("UsageRollup.Recorded", mapper.to_domain_event(n))
        earlier[(rollup.model_id, rollup.model_version, rollup.hour)] = (n, rollup)
    delete_ids: list[int] = []
    rollups: list[tuple[int, StoredEvent]] = []
    compacted = reclaimed = 0
    row_overhead = len(RAW_TOPIC) + _ROW_OVERHEAD
    now = datetime.now(UTC)
    for key, members in groups.items():
        model_id, version, hour = keys[key]
        previous = earlier.get((model_id, version, hour))
        if previous is not None and previous[0].id > through:
            for i in members:  # a rebuild has not read the earlier roll-up yet: merge it later
                chunk.kept[i] = 0
            continue
        folded = [events[i] for i in members]
        stats = UsageStats.of_requests(folded)
        api_keys = key_counts_of(folded)
        owner_id = folded[-1].owner_id
        newest = rows[members[-1]][0]
        raw_events = len(members)
        reclaimed += sum([len(rows[i][2]) for i in members]) + row_overhead * len(members)
        if previous is not None:
            n, rollup = previous
            stats.merge(stats_of(rollup))
            merge_key_counts(api_keys, rollup.api_keys)
            owner_id = str(rollup.owner_id)
            newest = max(newest, n.id)
            raw_events += rollup.raw_events
            delete_ids.append(n.id)
            reclaimed += len(n.state) + len(n.topic) + _ROW_OVERHEAD
            summary.rollups_merged += 1
        event = roll_up(
            model_id=model_id,
            owner_id=UUID(owner_id),
            hour=hour,
            stats=stats,
            raw_events=raw_events,
            api_keys=api_keys,
            model_version=version,
            now=now,
        )
        stored = mapper.to_stored_event(event)
        rollups.append((newest, stored))
        compacted += len(members)
        reclaimed -= len(stored.state) + len(stored.topic) + _ROW_OVERHEAD
    summary.events += compacted
    summary.deferred += sum(len(members) for members in groups.values()) - compacted
    summary.rollups_written += len(rollups)
    summary.models |= {m for m, _, _ in keys.values()}
    summary.hours |= {(m, h) for m, _, h in keys.values()}
    summary.bytes_reclaimed += reclaimed
    if summary.dry_run or not compacted:
        return
    if archive_to is not None:
        summary.archived_bytes += archive.write_lines(archive_to, chunk.archive_payloads_now())
    change = Replacement(
        raw_topic=RAW_TOPIC, raw_ranges=chunk.ranges(), delete_ids=delete_ids, rollups=rollups
    )
    summary.longest_lock_s = max(summary.longest_lock_s, recorder.replace(change))


@cache
def _raw_decoder() -> msgspec.msgpack.Decoder[Any]:
    """The stored raw usage event as a struct, UUIDs kept as text (decoded and hashed in C)."""
    fields: list[Any] = []
    for f in state_fields(RAW_TOPIC):
        kind = str if f.type is UUID else f.type
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, kind, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, kind, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, kind))
    struct = msgspec.defstruct("RawUsage", fields, array_like=True, gc=False)
    return msgspec.msgpack.Decoder(struct)


@cache
def _line_struct() -> tuple[type[msgspec.Struct], Callable[[Any], tuple[Any, ...]]]:
    """The archive record (``archive._line``) as a struct, and a getter of its event fields."""
    names = [
        f.name
        for f in msgspec.structs.fields(cast("type[msgspec.Struct]", _raw_decoder().type))
        if f.name not in _ARCHIVE_SKIPPED
    ]
    fields = [("id", str), ("position", int), ("recorded_at", datetime)]
    line = msgspec.defstruct("ArchiveLine", [*fields, *((n, Any) for n in names)], gc=False)
    return line, attrgetter(*names)


_json = msgspec.json.Encoder()
_EPOCH_DAY = date(1970, 1, 1)
_ARCHIVE_SKIPPED = frozenset({"originator_topic", "timestamp"})


@contextmanager
def _usage_positions_locked(container: Container) -> Iterator[int]:
    """Hold the locks of every projection of the usage log; yield their lowest position."""
    store = container.store
    live = sorted(p.name for p in container.projector.projections.values() if p.source == "usage")
    names = sorted({*live, *(name + NEXT for name in live)})
    with store.write(names[0]) as cur:
        for name in names[1:]:
            store.lock(cur, name)
        cur.execute("SELECT name, position FROM projection_state")
        stored = {str(name): int(position) for name, position in cur.fetchall()}
        positions = [stored.get(name, 0) for name in live]
        positions += [stored[name] for name in names if name.endswith(NEXT) and name in stored]
        yield min(positions, default=0)
