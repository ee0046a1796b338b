"""The usage archive: raw usage events as gzip-compressed JSON Lines, in files per UTC day.

A line is one call, however it was stored: a ``UsageBatch.Recorded``'s calls are archived with
the fields of a ``PredictionUsage.Recorded``'s line, each named by its ``call_id``, at the
batch's position and recording time (compaction's ``_call_lines``; ``write`` here through
``as_events``), so de-duplication by ``id`` holds for both.

Each compaction chunk archives its events, one gzip member per day it touches, before its
transaction deletes them. A chunk killed between the two is archived again by the rerun, so the
archive is at-least-once: readers drop repeated ``id`` values (``read_archive`` does).

No file is ever appended to in place. A chunk's member for a day is a new file of that day
(``usage-<day>.jsonl.gz`` for the first, then ``usage-<day>.<n>.jsonl.gz``), written under a
temporary name, synced, and renamed into place; the directory is synced before compaction
deletes the events. A crash or a full disk mid-write leaves no partial file under an archive
name (one compaction writes at a time: the job lock; a dead writer's temporary is removed by
the next). Once a day has more than ``MAX_PARTS`` files they are merged the same way into its
first file (rewriting a day's file for every chunk would copy the whole day each time).
A damaged member (a file cut short by an older, appending writer; a disk error) is reported
and skipped, and every other member is read: its records are not lost, because the chunk whose
member was cut did not delete its events, and archived them again when it was rerun.

``zcat usage-2026-10-01*.jsonl.gz`` reads a day (gzip members concatenate).
"""

from __future__ import annotations

import gzip
import logging
import mmap
import os
import secrets
import zlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from domain.usage_batch import UsageBatch, as_events

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from uuid import UUID

    from domain.usage import PredictionUsage

log = logging.getLogger("modelledger.scheduler.archive")
_PREFIX = "usage-"
_SUFFIX = ".jsonl.gz"
_TEMPORARY = ".tmp"  # ``.usage-<day>[.<n>].jsonl.gz.<random>.tmp``: hidden from ``days``
MAX_PARTS = 16  # files of one day before they are merged into its first
_encoder = msgspec.json.Encoder()
_SKIPPED = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp"})
_GZIP_MAGIC = b"\x1f\x8b\x08"  # a member's first bytes (deflate)
_BLOCK = 1 << 16  # compressed bytes fed to the decompressor at a time
_COPY = 1 << 20


class ArchiveDamage(NamedTuple):
    """A part of an archive file that could not be read (its records were skipped)."""

    path: Path
    offset: int  # where the damaged member starts
    reason: str


def archive_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "archive"


def _line(notification_id: int, e: PredictionUsage.Recorded) -> dict[str, Any]:
    state = {k: v for k, v in vars(e).items() if k not in _SKIPPED}
    return {"id": e.originator_id, "position": notification_id, "recorded_at": e.timestamp, **state}


def write(
    directory: Path,
    events: Iterable[tuple[int, PredictionUsage.Recorded | UsageBatch.Recorded]],
) -> int:
    """Archive the events (a batch: its calls), a new file for each day they touch
    (``write_lines``); returns bytes written."""
    by_day: dict[date, list[bytes]] = defaultdict(list)
    for notification_id, stored in events:
        for e in as_events(stored) if isinstance(stored, UsageBatch.Recorded) else [stored]:
            by_day[e.occurred_at.astimezone(UTC).date()].append(
                _encoder.encode(_line(notification_id, e))
            )
    encoded = {day: b"\n".join(lines) + b"\n" for day, lines in by_day.items()}
    return write_lines(directory, compress_lines(encoded))


def compress_lines(by_day: Mapping[date, bytes]) -> dict[date, bytes]:
    """Each day's JSON Lines as one gzip member (zlib releases the GIL: any thread may do it)."""
    return {day: gzip.compress(lines, compresslevel=1) for day, lines in by_day.items()}


def write_lines(directory: Path, by_day: Mapping[date, bytes]) -> int:
    """Archive each day's gzip member (``compress_lines``) as a new file of that day, synced to
    disk with the directory (see the module's docstring); returns bytes written."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        _sync_directory(directory.parent)
    _remove_temporaries(directory)
    files: dict[date, list[tuple[int, Path]]] = defaultdict(list)
    for day, part, path in _files(directory):
        files[day].append((part, path))
    written = 0
    for day, payload in sorted(by_day.items()):
        part = max((number for number, _ in files[day]), default=-1) + 1
        target = directory / _file_name(day, part)
        _write_file(target, [payload])
        files[day].append((part, target))
        written += len(payload)
    _sync_directory(directory)  # the new names are durable before compaction deletes events
    for day in sorted(by_day):
        if len(files[day]) > MAX_PARTS:
            _merge(directory, day, sorted(files[day]))
    return written


def _merge(directory: Path, day: date, parts: list[tuple[int, Path]]) -> None:
    """One file for the day: its files' members in order, renamed over its first file; then the
    others go. A crash before they are gone leaves their records twice, which readers drop."""
    _write_file(directory / _file_name(day, 0), [path for _, path in parts])
    _sync_directory(directory)
    for number, path in parts:
        if number != 0:
            path.unlink(missing_ok=True)
    _sync_directory(directory)


def _write_file(target: Path, contents: list[bytes | Path]) -> None:
    """Write ``contents`` (bytes, or files' bytes) to a temporary, sync it, rename it to
    ``target``: the name holds the old file or the whole new one, never a part."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}{_TEMPORARY}")
    # os.open with 0o666: the file gets the process's umask, like the files ``open`` makes.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            for content in contents:
                if isinstance(content, bytes):
                    out.write(content)
                    continue
                with content.open("rb") as source:
                    while block := source.read(_COPY):
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _remove_temporaries(directory: Path) -> None:
    """Temporaries a killed writer left (the job lock: no other writer is running)."""
    for stale in directory.glob(f".{_PREFIX}*{_SUFFIX}.*{_TEMPORARY}"):
        stale.unlink(missing_ok=True)
        log.info("stale archive temporary removed", extra={"file": str(stale)})


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_name(day: date, part: int) -> str:
    return f"{_PREFIX}{day.isoformat()}{f'.{part:06d}' if part else ''}{_SUFFIX}"


def _files(directory: Path) -> list[tuple[date, int, Path]]:
    """The archive's files as (day, part, path), in reading order."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        stem = path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX)
        day_text, _, part_text = stem.partition(".")
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            continue
        if part_text and not (part_text.isascii() and part_text.isdigit()):
            continue
        found.append((day, int(part_text or 0), path))
    return sorted(found)


def days(directory: Path) -> list[tuple[date, Path]]:
    """The archive's files and their days, oldest day first (a day may have several)."""
    return [(day, path) for day, _, path in _files(directory)]


def read_archive(
    directory: Path,
    *,
    model_id: UUID | None = None,
    damaged: list[ArchiveDamage] | None = None,
) -> Iterator[dict[str, Any]]:
    """Archived usage records (JSON values, each ``id`` once), oldest day first.

    A damaged member is logged as a warning and appended to ``damaged`` when given; the
    records of every other member, before or after it, are read.
    """
    seen: set[str] = set()
    wanted = None if model_id is None else str(model_id)
    for _, path in days(directory):
        for lines in _members(path, damaged):
            for raw in lines.splitlines():
                record = msgspec.json.decode(raw)
                if record["id"] in seen or (wanted is not None and record["model_id"] != wanted):
                    continue
                seen.add(record["id"])
                yield record


def _members(path: Path, damaged: list[ArchiveDamage] | None) -> Iterator[bytes]:
    """The decompressed content of each whole member of a file (CRC checked), in order."""
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            view = memoryview(data)
            try:
                start = 0
                while start < len(data):
                    content, end, reason = _member(view, start)
                    if reason is None:
                        yield content
                        start = end
                        continue
                    _report(ArchiveDamage(path, start, reason), damaged)
                    # Read on from the next member that begins after the damaged one's start.
                    start = data.find(_GZIP_MAGIC, start + 1)
                    if start < 0:
                        return
            finally:
                view.release()


def _member(view: memoryview, start: int) -> tuple[bytes, int, str | None]:
    """(content, the offset after the member, None) or (b"", _, why it cannot be read)."""
    decompressor = zlib.decompressobj(wbits=31)  # one gzip member, its CRC and size checked
    parts: list[bytes] = []
    position = start
    try:
        while not decompressor.eof:
            if position >= len(view):
                return b"", position, "truncated: the file ends inside a gzip member"
            parts.append(decompressor.decompress(view[position : position + _BLOCK]))
            position += _BLOCK
    except zlib.error as error:
        return b"", position, f"not a readable gzip member ({error})"
    end = min(position, len(view)) - len(decompressor.unused_data)
    return b"".join(parts), end, None


def _report(damage: ArchiveDamage, damaged: list[ArchiveDamage] | None) -> None:
    log.warning(
        "damaged usage archive member skipped: %s at byte %d: %s",
        damage.path, damage.offset, damage.reason,
        extra={"file": str(damage.path), "offset": damage.offset, "reason": damage.reason},
    )
    if damaged is not None:
        damaged.append(damage)


def prune(directory: Path, *, keep_days: int, now: datetime | None = None) -> list[str]:
    """Delete archive files of days older than ``keep_days``; returns their names."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    oldest_kept = today - timedelta(days=keep_days)
    removed = []
    for day, path in days(directory):
        if day < oldest_kept:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
