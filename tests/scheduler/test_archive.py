"""The usage archive survives crashes and full disks: an archive file appears whole or not at
all, and a reader skips (and reports) a damaged member and reads every other one."""

from __future__ import annotations

import errno
import gzip
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from domain.usage import METERED_SENDER
from domain.usage_batch import call_id
from scheduler import archive
from tests.scheduler.usage_fixtures import batch, metered_calls, usage

if TYPE_CHECKING:
    from domain.usage import PredictionUsage

ROOT = Path(__file__).resolve().parents[2]
DAY = datetime(2026, 10, 1, tzinfo=UTC)
MODEL = (uuid.uuid4(), uuid.uuid4())


def events(prefix: str, count: int, first_id: int) -> list[tuple[int, PredictionUsage.Recorded]]:
    """``count`` usage events of one day, numbered from ``first_id``."""
    rng = random.Random(prefix)
    return [
        (first_id + i, usage(MODEL, f"{prefix}{i}", DAY + timedelta(minutes=i), rng))
        for i in range(count)
    ]


def files(directory: Path) -> dict[str, bytes]:
    """Every file of the directory (temporaries too) and its bytes."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def newest(directory: Path) -> Path:
    return archive.days(directory)[-1][1]


def request_ids(directory: Path, damaged: list[archive.ArchiveDamage] | None = None) -> list[str]:
    return sorted(r["request_id"] for r in archive.read_archive(directory, damaged=damaged))


def expected(*prefixes_and_counts: tuple[str, int]) -> list[str]:
    return sorted(f"{prefix}{i}" for prefix, count in prefixes_and_counts for i in range(count))


class TestReadingDamage:
    def test_a_truncated_last_member_is_reported_and_every_complete_record_is_read(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        archive.write(tmp_path, events("a", 50, 1))
        archive.write(tmp_path, events("b", 50, 51))
        path = newest(tmp_path)
        with path.open("r+b") as file:  # the disk filled up in the middle of the last member
            file.truncate(path.stat().st_size - 40)
        damaged: list[archive.ArchiveDamage] = []
        with caplog.at_level(logging.WARNING, logger="modelledger.scheduler.archive"):
            found = request_ids(tmp_path, damaged)
        assert found == expected(("a", 50))
        assert damaged == [archive.ArchiveDamage(path, 0, damaged[0].reason)]
        assert "truncated" in damaged[0].reason
        assert str(path) in caplog.text

    def test_a_day_file_whose_last_member_is_cut_short_keeps_its_earlier_members(
        self, tmp_path: Path
    ) -> None:
        # A day file of several members, as the appending writer (or a merge) made them.
        first = gzip.compress(b"".join(_lines(events("a", 30, 1))))
        last = gzip.compress(b"".join(_lines(events("b", 30, 31))))
        path = tmp_path / "usage-2026-10-01.jsonl.gz"
        path.write_bytes(first + last[:-8])  # cut in its CRC and size trailer
        damaged: list[archive.ArchiveDamage] = []
        assert request_ids(tmp_path, damaged) == expected(("a", 30))
        assert [(d.path, d.offset) for d in damaged] == [(path, len(first))]

    def test_a_member_cut_short_between_whole_ones_is_skipped_and_the_others_read(
        self, tmp_path: Path
    ) -> None:
        # What the appending writer left: a member cut short by a full disk, then the later
        # run's members after it (with the cut one's records archived again).
        first = gzip.compress(b"".join(_lines(events("a", 30, 1))))
        cut = gzip.compress(b"".join(_lines(events("b", 30, 31))))
        last = gzip.compress(b"".join(_lines(events("b", 30, 31) + events("c", 5, 61))))
        path = tmp_path / "usage-2026-10-01.jsonl.gz"
        path.write_bytes(first + cut[: len(cut) // 2] + last)
        damaged: list[archive.ArchiveDamage] = []
        assert request_ids(tmp_path, damaged) == expected(("a", 30), ("b", 30), ("c", 5))
        assert [(d.path, d.offset) for d in damaged] == [(path, len(first))]

    def test_bytes_that_are_no_gzip_at_all_are_reported_and_the_other_files_read(
        self, tmp_path: Path
    ) -> None:
        archive.write(tmp_path, events("a", 10, 1))
        garbage = tmp_path / "usage-2026-10-02.jsonl.gz"
        garbage.write_bytes(b"\x00" * 512)  # a file system's zero-filled tail after a crash
        damaged: list[archive.ArchiveDamage] = []
        assert request_ids(tmp_path, damaged) == expected(("a", 10))
        assert [(d.path, d.offset) for d in damaged] == [(garbage, 0)]

    def test_an_intact_archive_reports_nothing(self, tmp_path: Path) -> None:
        for number in range(3):
            archive.write(tmp_path, events(f"p{number}", 20, 1 + 20 * number))
        damaged: list[archive.ArchiveDamage] = []
        assert request_ids(tmp_path, damaged) == expected(("p0", 20), ("p1", 20), ("p2", 20))
        assert damaged == []


def _lines(batch: list[tuple[int, PredictionUsage.Recorded]]) -> list[bytes]:
    return [archive._encoder.encode(archive._line(n, e)) + b"\n" for n, e in batch]


# A writer SIGKILLed after its new day file is written and synced, before the rename.
_KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from scheduler import archive
from tests.scheduler.test_archive import events

def park(fd):
    print("parked", flush=True)
    time.sleep(600)

os.fsync = park
archive.write(Path(sys.argv[1]), events("b", 40, 51))
"""


class TestWriting:
    def test_a_crash_between_write_and_rename_leaves_the_archive_as_it_was(
        self, tmp_path: Path
    ) -> None:
        archive.write(tmp_path, events("a", 40, 1))
        before = files(tmp_path)
        process = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "parked"
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        after = files(tmp_path)
        [temporary] = set(after) - set(before)  # the dead writer's, whole, under no archive name
        assert temporary.startswith(".")
        assert {name: after[name] for name in before} == before
        assert [path.name for _, path in archive.days(tmp_path)] == list(before)
        damaged: list[archive.ArchiveDamage] = []
        assert request_ids(tmp_path, damaged) == expected(("a", 40))
        assert damaged == []
        # The rerun archives the chunk again, and the dead writer's temporary goes.
        archive.write(tmp_path, events("b", 40, 51))
        assert request_ids(tmp_path) == expected(("a", 40), ("b", 40))
        assert not any(name.startswith(".") for name in files(tmp_path))

    def test_a_write_that_fails_midway_leaves_the_archive_as_it_was(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        archive.write(tmp_path, events("a", 40, 1))
        before = files(tmp_path)

        def full(_: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(OSError, match="No space left"):
            archive.write(tmp_path, events("b", 40, 51))
        monkeypatch.undo()
        assert files(tmp_path) == before  # nothing half written, no temporary left

    def test_the_new_file_is_synced_before_its_rename_and_the_directory_after(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        archive.write(tmp_path, events("a", 10, 1))
        steps: list[tuple[str, Any]] = []
        fsync, replace = os.fsync, Path.replace

        def synced(fd: int) -> None:
            mode = os.fstat(fd).st_mode
            steps.append(("sync", "directory" if stat.S_ISDIR(mode) else "file"))
            fsync(fd)

        def renamed(self: Path, target: Any) -> Path:
            steps.append(("rename", Path(target)))
            return replace(self, target)

        monkeypatch.setattr(os, "fsync", synced)
        monkeypatch.setattr(Path, "replace", renamed)
        archive.write(tmp_path, events("b", 10, 11))
        assert steps == [("sync", "file"), ("rename", newest(tmp_path)), ("sync", "directory")]
        assert request_ids(tmp_path) == expected(("a", 10), ("b", 10))

    def test_a_day_of_many_chunks_is_merged_into_one_file_in_order(self, tmp_path: Path) -> None:
        chunks = archive.MAX_PARTS + 1
        for number in range(chunks):
            archive.write(tmp_path, events(f"p{number}-", 5, 1 + 5 * number))
        assert len(archive.days(tmp_path)) == 1
        positions = [r["position"] for r in archive.read_archive(tmp_path)]
        assert positions == list(range(1, 1 + 5 * chunks))
        archive.write(tmp_path, events("next-", 5, 1000))
        assert len(archive.days(tmp_path)) == 2  # a new part beside the merged file
        assert len(list(archive.read_archive(tmp_path))) == 5 * chunks + 5


class TestBatches:
    """A batch's calls are archived as the lines their raw events would be."""

    def test_a_batch_writes_a_line_per_call_named_by_its_call_id_with_the_batchs_fields(
        self, tmp_path: Path
    ) -> None:
        stored = batch(MODEL, metered_calls(30, DAY, random.Random(9), keys=("k1", "")),
                       model_version=3)
        archive.write(tmp_path, [(7, stored)])
        records = list(archive.read_archive(tmp_path))
        assert [r["id"] for r in records] == [str(call_id(stored, i))
                                              for i in range(len(stored.calls))]
        assert [(r["request_id"], r["api_key_id"], r["response_time_ms"]) for r in records] == [
            (c.request_id, c.api_key_id, c.response_time_ms) for c in stored.calls]
        assert {(r["position"], r["sender"], r["model_version"], r["model_id"])
                for r in records} == {(7, METERED_SENDER, 3, str(MODEL[0]))}

    def test_a_batch_archived_again_by_a_rerun_reads_each_call_once(self, tmp_path: Path) -> None:
        stored = batch(MODEL, metered_calls(10, DAY, random.Random(10)))
        archive.write(tmp_path, [(3, stored)])
        archive.write(tmp_path, [(3, stored)])
        assert request_ids(tmp_path) == sorted(c.request_id for c in stored.calls)
