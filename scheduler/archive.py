"""The usage archive: raw usage events as gzip-compressed JSON Lines, one file per UTC day.

Each compaction chunk appends one gzip member to the files of the days it touches, before its
transaction deletes the events. A chunk killed between the two is archived again by the rerun,
so the archive is at-least-once: readers drop repeated ``id`` values (``read_archive`` does).
"""

from __future__ import annotations

import gzip
import os
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from uuid import UUID

    from domain.usage import PredictionUsage

_PREFIX = "usage-"
_SUFFIX = ".jsonl.gz"
_encoder = msgspec.json.Encoder()
_SKIPPED = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp"})


def archive_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "archive"


def _line(notification_id: int, e: PredictionUsage.Recorded) -> dict[str, Any]:
    state = {k: v for k, v in vars(e).items() if k not in _SKIPPED}
    return {"id": e.originator_id, "position": notification_id, "recorded_at": e.timestamp, **state}


def write(directory: Path, events: Iterable[tuple[int, PredictionUsage.Recorded]]) -> int:
    """Append the events to their days' files (synced to disk); returns bytes written."""
    by_day: dict[date, list[bytes]] = defaultdict(list)
    for notification_id, e in events:
        by_day[e.occurred_at.astimezone(UTC).date()].append(
            _encoder.encode(_line(notification_id, e))
        )
    encoded = {day: b"\n".join(lines) + b"\n" for day, lines in by_day.items()}
    return write_lines(directory, compress_lines(encoded))


def compress_lines(by_day: Mapping[date, bytes]) -> dict[date, bytes]:
    """Each day's JSON Lines as one gzip member (zlib releases the GIL: any thread may do it)."""
    return {day: gzip.compress(lines, compresslevel=1) for day, lines in by_day.items()}


def write_lines(directory: Path, by_day: Mapping[date, bytes]) -> int:
    """Append each day's gzip member (``compress_lines``) to its file, synced to disk; returns
    bytes written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for day, payload in sorted(by_day.items()):
        with (directory / f"{_PREFIX}{day.isoformat()}{_SUFFIX}").open("ab") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        written += len(payload)
    return written


def days(directory: Path) -> list[tuple[date, Path]]:
    """The archived days and their files, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        try:
            day = date.fromisoformat(path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX))
        except ValueError:
            continue
        found.append((day, path))
    return sorted(found)


def read_archive(directory: Path, *, model_id: UUID | None = None) -> Iterator[dict[str, Any]]:
    """Archived usage records (JSON values, each ``id`` once), oldest day first."""
    seen: set[str] = set()
    for _, path in days(directory):
        with gzip.open(path, "rb") as file:
            for raw in file:
                record = msgspec.json.decode(raw)
                if record["id"] in seen or (
                    model_id is not None and record["model_id"] != str(model_id)
                ):
                    continue
                seen.add(record["id"])
                yield record


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
