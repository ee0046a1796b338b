"""Usage compaction: raw usage events older than the retention become hourly roll-ups.

Raw usage is stored two ways: a ``PredictionUsage.Recorded`` per call, or a
``UsageBatch.Recorded`` holding calls of one model-version-hour (the endpoint's calls with
generated request ids). A batch is compacted like one raw event of its model-version-hour that
stands for all its calls: its calls are folded into the roll-up's statistics and key counts,
and the archive holds each call as the line its raw event would have. Counts are of usage
records (a raw event one, a batch its calls): ``CompactionSummary.events``, a roll-up's
``raw_events`` and the chunk sizes; ``CompactionSummary.batches`` says how many batches were
among them. A chunk reads both topics in notification-id order, asking for as many rows as
the last chunk's mix says make ``chunk_size`` records, and leaves rows past that many records
(read, not decoded) to the next one, so a chunk's work stays bounded whatever the batches hold.

Why it is exact (see also ``projections/usage/fold.py``):

* A chunk runs while holding the write locks of every projection reading the usage log
  (``usage`` and a rebuild's ``usage__next``), so no projection batch straddles it, and it
  compacts only events at or below the lowest of their positions: every projection existing
  now has counted them.
* The chunk's roll-up of a model-hour takes the notification id of the newest event it
  replaces (raw events, batches, or the model-hour's earlier roll-up, merged in; a batch is
  of one model-version-hour, so every roll-up has an id of its own to take). A projection
  past that id never reads it; a rebuild (or a projection created later) reads the roll-up
  where the raw events were. Either way each request is counted once, and hourly rows are equal.
  The roll-up carries each API key's requests and latest use too (``api_keys``), so the
  keys' rows (``api_key_usage``) are equal as well.
* Deleting, inserting the roll-ups and recording the compacted usage ids is ONE transaction
  of the event store (``compaction_recorders``): a kill at any point leaves either the raw
  events or their roll-ups, and the rerun continues. Ingest waits for at most that
  transaction; reading, folding and archiving happen before it, without the insert lock.

An event is compacted when both the time it occurred and the time it was recorded are older
than the cutoff (a batch: its latest call and its recording), so the scan stops at the first
chunk reaching recent recordings; late usage for an old hour is compacted once its recording
is old too (it is counted meanwhile).
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
from typing import TYPE_CHECKING, Any, cast, get_type_hints
from uuid import UUID, uuid5

import msgspec
import msgspec.structs
from eventsourcing.utils import get_topic

from domain.usage import METERED_SENDER, PredictionUsage
from domain.usage_batch import MeteredCall, UsageBatch
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
BATCH_TOPIC = get_topic(UsageBatch.Recorded)
USAGE_TOPICS = (RAW_TOPIC, BATCH_TOPIC)  # the raw usage compaction reads, deletes and archives
CHUNK_SIZE = 20_000
# While new usage keeps arriving, the service is answering requests on the same CPUs: chunks
# are at most this large and after each compaction pauses this long per second of work. A
# chunk of 20,000 events kept both cores busy for ~0.6 s (the job's process and its database
# backend), so requests queued behind it; one of 2,000 is a burst of tens of ms, and with the
# pause compaction takes at most a quarter of the time (see ARCHITECTURE.md, "Compaction").
BUSY_CHUNK_SIZE = 2_000
MIN_CHUNK_ROWS = 64
INGEST_YIELD = 3.0
_ROW_OVERHEAD = 16 + 8 + 8  # originator id, version and notification id of a stored row


@dataclass
class CompactionSummary:
    """What a run compacted (or, in a dry run, would compact)."""

    cutoff: datetime
    dry_run: bool = False
    chunks: int = 0
    scanned: int = 0  # stored events read (raw events and batches)
    events: int = 0  # usage records compacted: raw events, and the calls of batches
    batches: int = 0  # batches among them
    rollups_written: int = 0
    rollups_merged: int = 0
    models: set[UUID] = field(default_factory=set)
    hours: set[tuple[UUID, int]] = field(default_factory=set)
    bytes_reclaimed: int = 0
    archived_bytes: int = 0
    through: int = 0  # the tracking position the run was bounded by
    deferred: int = 0  # old usage records left for a later run (a rebuild is behind them)
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
            "batches": self.batches,
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
    ``busy_chunk_size`` usage records and each is followed by a pause of ``ingest_yield``
    times its work; until the first chunk tells, the service counts as busy."""
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
    ahead: tuple[Future[_Chunk], int] | None = None
    rows_per_record = 1.0  # in the last chunk: 1 with raw events only, less with batches

    def read(start: int, through: int, size: int) -> _Chunk:
        # At least MIN_CHUNK_ROWS: after a chunk of one large batch, raw events may follow.
        limit = min(size, max(MIN_CHUNK_ROWS, math.ceil(size * rows_per_record)))
        rows = recorder.select_raw(start, through, limit, USAGE_TOPICS)
        chunk = _Chunk(rows, cutoff, size, limit)
        if archive_to is not None and not dry_run and chunk.groups:
            chunk.prepare_archive()
        return chunk

    # Busy until shown otherwise: a first chunk of the full size would be the longest burst.
    ingest_active = ingest_yield > 0
    try:
        while max_chunks is None or summary.chunks < max_chunks:
            working = time.monotonic()
            size = min(chunk_size, busy_chunk_size) if ingest_active else chunk_size
            with _usage_positions_locked(container) as through:
                summary.through = through
                chunk = _ahead_or_read(ahead, after, through, size, read)
                ahead = None
                rows = chunk.rows
                if not rows:
                    break
                after = rows[-1][0]
                summary.chunks += 1
                summary.scanned += len(rows)
                last = chunk.reached_recent or chunk.at_end
                rows_per_record = len(rows) / chunk.records
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
    ahead: tuple[Future[_Chunk], int] | None,
    after: int,
    through: int,
    size: int,
    read: Callable[[int, int, int], _Chunk],
) -> _Chunk:
    """The chunk read ahead if it was bounded by at most ``through``, else a fresh read."""
    if ahead is not None:
        future, bound = ahead
        if bound <= through:
            return future.result()
        future.cancel()
        wait([future])
    return read(after, through, size)


class _Chunk:
    """A chunk's raw events and batches decoded, and its old ones grouped by model, version
    and hour (row indexes).

    Of the ``fetched`` rows (``limit`` were asked for), those up to the one reaching ``size``
    usage records are used (a batch counts its calls, at least one); the rest are left,
    undecoded, to the next chunk."""

    def __init__(self, fetched: Sequence[RawRow], cutoff: datetime, size: int, limit: int) -> None:
        decode = _raw_decoder().decode
        # Batches are decoded afterwards, only up to the chunk's size: one may hold thousands.
        self.events: list[Any] = [
            decode(state) if topic == RAW_TOPIC else None for _, _, state, topic in fetched
        ]
        events = self.events
        self.batch = bytearray(len(events))  # 1: the row is a ``UsageBatch.Recorded``
        self.has_batches = None in events
        self.records = self._decode_batches(fetched, size) if self.has_batches else len(events)
        self.rows = rows = fetched if len(events) == len(fetched) else fetched[: len(events)]
        self.at_end = len(fetched) < limit and rows is fetched  # nothing more through the bound
        batch = self.batch
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
            if batch[i]:
                if e.calls and max([c.occurred_at for c in e.calls]) >= cutoff:
                    continue
                hours[i] = hour = e.hour
            else:
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

    def _decode_batches(self, fetched: Sequence[RawRow], size: int) -> int:
        """Decode the batches, and drop the rows after the one reaching ``size`` records;
        returns the records kept."""
        decode = _batch_decoder().decode
        events, batch = self.events, self.batch
        records = 0
        for i, e in enumerate(events):
            if e is None:
                events[i] = decoded = decode(fetched[i][2])
                batch[i] = 1
                records += len(decoded.calls) or 1
            else:
                records += 1
            if records >= size:
                del events[i + 1 :]
                del batch[i + 1 :]
                break
        return records

    def ranges(self) -> list[tuple[int, int]]:
        """Notification-id ranges covering exactly the kept rows (rows of the raw topics only)."""
        rows, kept = self.rows, self.kept
        ranges = []
        start = kept.find(1)
        while start >= 0:
            end = kept.find(0, start)
            last = len(kept) if end < 0 else end
            ranges.append((rows[start][0], rows[last - 1][0]))
            start = -1 if end < 0 else kept.find(1, end)
        return ranges

    def records_of(self, members: list[int]) -> list[Any]:
        """The usage records of a group's rows: raw events, and the calls of batches."""
        events = self.events
        if not self.has_batches:
            return [events[i] for i in members]
        batch, found = self.batch, []
        for i in members:
            if batch[i]:
                found += events[i].calls
            else:
                found.append(events[i])
        return found

    def batches_in(self, members: list[int]) -> int:
        """How many of the rows are batches."""
        return sum([self.batch[i] for i in members]) if self.has_batches else 0

    def stored_bytes(self, members: list[int]) -> int:
        """About what the rows take in the events table: states, topics and keys."""
        rows = self.rows
        return sum([len(rows[i][2]) + len(rows[i][3]) + _ROW_OVERHEAD for i in members])

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
        """The kept events as archive records, JSON Lines per UTC day, in id order; a batch's
        calls are the records their raw events would be (``archive``'s ``_line``)."""
        rows, events, hours, kept, batch = self.rows, self.events, self.hours, self.kept, self.batch
        line, values = _line_struct()
        by_day: dict[int, list[msgspec.Struct]] = {}
        day = -1
        lines: list[msgspec.Struct] = []
        for i in _indexes(kept):
            if hours[i] // 24 != day:
                day = hours[i] // 24
                lines = by_day.setdefault(day, [])
            e = events[i]
            if batch[i]:
                lines += _call_lines(rows[i][0], rows[i][1], e)
            else:
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
    compacted = reclaimed = 0  # rows replaced, bytes
    now = datetime.now(UTC)
    for key, members in groups.items():
        model_id, version, hour = keys[key]
        previous = earlier.get((model_id, version, hour))
        if previous is not None and previous[0].id > through:
            for i in members:  # a rebuild has not read the earlier roll-up yet: merge it later
                chunk.kept[i] = 0
            summary.deferred += len(chunk.records_of(members))
            continue
        folded = chunk.records_of(members)
        stats = UsageStats.of_requests(folded)
        api_keys = key_counts_of(folded)
        owner_id = events[members[-1]].owner_id
        newest = rows[members[-1]][0]
        raw_events = len(folded)
        reclaimed += chunk.stored_bytes(members)
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
        summary.events += len(folded)
        summary.batches += chunk.batches_in(members)
        reclaimed -= len(stored.state) + len(stored.topic) + _ROW_OVERHEAD
    summary.rollups_written += len(rollups)
    summary.models |= {m for m, _, _ in keys.values()}
    summary.hours |= {(m, h) for m, _, h in keys.values()}
    summary.bytes_reclaimed += reclaimed
    if summary.dry_run or not compacted:
        return
    if archive_to is not None:
        summary.archived_bytes += archive.write_lines(archive_to, chunk.archive_payloads_now())
    change = Replacement(
        raw_topics=USAGE_TOPICS, raw_ranges=chunk.ranges(), delete_ids=delete_ids, rollups=rollups
    )
    summary.longest_lock_s = max(summary.longest_lock_s, recorder.replace(change))


def _struct_fields(topic: str, kinds: dict[str, Any]) -> list[Any]:
    """The stored state's fields of ``topic`` as struct fields, UUIDs kept as text (decoded and
    hashed in C), the types in ``kinds`` replacing theirs."""
    fields: list[Any] = []
    for f in state_fields(topic):
        kind = kinds.get(f.name, str if f.type is UUID else f.type)
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, kind, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, kind, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, kind))
    return fields


@cache
def _raw_decoder() -> msgspec.msgpack.Decoder[Any]:
    """The stored raw usage event as a struct, UUIDs kept as text."""
    struct = msgspec.defstruct("RawUsage", _struct_fields(RAW_TOPIC, {}), array_like=True, gc=False)
    return msgspec.msgpack.Decoder(struct)


@cache
def _batch_decoder() -> msgspec.msgpack.Decoder[Any]:
    """The stored batch as a struct, UUIDs kept as text, its calls structs too (``MeteredCall``'s
    fields and defaults)."""
    defaults = MeteredCall._field_defaults
    call = msgspec.defstruct(
        "RawCall",
        [
            (name, kind, defaults[name]) if name in defaults else (name, kind)
            for name, kind in get_type_hints(MeteredCall).items()
        ],
        array_like=True,
        gc=False,
    )
    # ``call`` is a struct made at run time: mypy cannot take it for a type.
    fields = _struct_fields(BATCH_TOPIC, {"calls": list[call]})  # type: ignore[valid-type]
    return msgspec.msgpack.Decoder(msgspec.defstruct("RawBatch", fields, array_like=True))


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


def _call_lines(position: int, batch_id: str, batch: Any) -> list[msgspec.Struct]:
    """A batch's calls as the archive records of raw events: named by ``call_id``, with the
    batch's model, owner and version, sent by the service itself."""
    line, _ = _line_struct()
    template = line("", position, batch.timestamp, **_call_template(batch))
    namespace = UUID(batch_id)
    replace, asdict = msgspec.structs.replace, msgspec.structs.asdict
    return [  # ``call_id``, for the decoded struct
        replace(template, id=str(uuid5(namespace, str(index))), **asdict(c))
        for index, c in enumerate(batch.calls)
    ]


def _call_template(batch: Any) -> dict[str, Any]:
    """A raw event's line fields that a batch's calls share: the batch's (model, owner and
    version), the service's sender, every other field's default (calls fill in theirs)."""
    shared = {"sender": METERED_SENDER, "sender_issuer": ""}
    found: dict[str, Any] = {}
    for f in msgspec.structs.fields(cast("type[msgspec.Struct]", _raw_decoder().type)):
        if f.name in _ARCHIVE_SKIPPED:
            continue
        if f.name in shared:
            found[f.name] = shared[f.name]
        elif f.name in _BATCH_SHARED:
            found[f.name] = getattr(batch, f.name)
        elif f.default is not msgspec.NODEFAULT:
            found[f.name] = f.default
        elif f.default_factory is not msgspec.NODEFAULT:
            found[f.name] = f.default_factory()
        else:
            found[f.name] = None  # a call's field: each call gives its own
    return found


_json = msgspec.json.Encoder()
_EPOCH_DAY = date(1970, 1, 1)
_ARCHIVE_SKIPPED = frozenset({"originator_topic", "timestamp"})
_BATCH_SHARED = frozenset({"model_id", "owner_id", "model_version"})


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
