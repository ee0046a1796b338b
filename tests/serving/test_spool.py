"""The usage spool: an append returns only after its commit, appends share commits, it is
bounded, and a process's acknowledged records survive its SIGKILL and are adopted after."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from serving.spool import (
    Spool,
    SpoolError,
    SpoolFullError,
    SpoolInUseError,
    SpoolWriteError,
    orphans,
    pending_in,
)
from tests.services.spool_helpers import Child


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    opened = Spool.open(tmp_path / "spool")
    yield opened
    opened.close()


def _committed(path: Path) -> list[bytes]:
    """The records another connection sees: only what was committed."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT body FROM records ORDER BY seq").fetchall()
    return [body for (row,) in rows for body in msgspec.msgpack.decode(row, type=list[bytes])]


def _bodies(rows: list[tuple[int, list[bytes]]]) -> list[bytes]:
    return [body for _, bodies in rows for body in bodies]


class _WriteLock:
    """SQLite's write lock on a spool, held by another connection: the writer's commit waits."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


async def _started(*appends: asyncio.Task[None]) -> None:
    """Let the tasks reach their await (queued for the writer)."""
    await asyncio.sleep(0.05)
    assert not any(a.done() for a in appends)


class TestAppend:
    async def test_an_append_returns_only_after_its_record_is_committed(
        self, spool: Spool
    ) -> None:
        lock = _WriteLock(spool.path)
        append = asyncio.create_task(spool.append(b"first"))
        await asyncio.sleep(0.3)
        assert not append.done()  # the commit is blocked, so the append waits
        assert _committed(spool.path) == []
        lock.release()
        await asyncio.wait_for(append, 5)
        assert _committed(spool.path) == [b"first"]

    async def test_concurrent_appends_share_commits(self, spool: Spool) -> None:
        lock = _WriteLock(spool.path)
        appends = [asyncio.create_task(spool.append(f"r{i}".encode())) for i in range(64)]
        await _started(*appends)
        before = spool.commits
        lock.release()
        await asyncio.wait_for(asyncio.gather(*appends), 10)
        # The writer took one record into the blocked transaction; the other 63 queued
        # meanwhile and went into the next one.
        assert spool.commits - before <= 2
        assert sorted(_committed(spool.path)) == sorted(f"r{i}".encode() for i in range(64))

    async def test_an_unloaded_spool_commits_each_append_at_once(self, spool: Spool) -> None:
        for i in range(3):
            await asyncio.wait_for(spool.append(f"r{i}".encode()), 5)
        assert spool.commits == 3
        assert _committed(spool.path) == [b"r0", b"r1", b"r2"]

    async def test_more_than_max_pending_waiting_appends_are_refused_at_once(
        self, tmp_path: Path
    ) -> None:
        spool = Spool.open(tmp_path / "spool", max_pending=10)
        try:
            lock = _WriteLock(spool.path)
            waiting = [asyncio.create_task(spool.append(b"w")) for _ in range(10)]
            await _started(*waiting)
            with pytest.raises(SpoolFullError):
                await asyncio.wait_for(spool.append(b"one too many"), 0.5)
            lock.release()
            await asyncio.wait_for(asyncio.gather(*waiting), 10)
            assert _committed(spool.path) == [b"w"] * 10
            await spool.append(b"room again")
        finally:
            spool.close()

    async def test_a_failed_commit_fails_its_appends_and_keeps_what_was_acknowledged(
        self, tmp_path: Path
    ) -> None:
        spool = Spool.open(tmp_path / "spool", busy_timeout=0.1)
        try:
            await spool.append(b"acknowledged")
            lock = _WriteLock(spool.path)
            with pytest.raises(SpoolWriteError, match="SQLITE_BUSY"):
                await asyncio.wait_for(spool.append(b"lost"), 5)
            lock.release()
            await spool.append(b"later")
            assert _committed(spool.path) == [b"acknowledged", b"later"]
        finally:
            spool.close()

    async def test_close_commits_what_is_queued_and_later_appends_fail(
        self, spool: Spool
    ) -> None:
        lock = _WriteLock(spool.path)
        queued = [asyncio.create_task(spool.append(f"q{i}".encode())) for i in range(5)]
        await _started(*queued)
        closing = asyncio.create_task(asyncio.to_thread(spool.close))
        await asyncio.sleep(0.1)
        lock.release()
        await asyncio.wait_for(asyncio.gather(closing, *queued), 10)
        assert len(_committed(spool.path)) == 5
        with pytest.raises(SpoolWriteError):
            await spool.append(b"after close")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs for a spool directory, unmounted afterwards."""
    directory = tmp_path / "small"
    directory.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("no mount command to mount a small tmpfs")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {done.stderr.strip() or 'not root'}")
    try:
        yield directory
    finally:
        if subprocess.run([umount, str(directory)], check=False).returncode != 0:
            subprocess.run([umount, "-l", str(directory)], check=False)


async def test_a_full_disk_fails_appends_and_loses_nothing_acknowledged(small_disk: Path) -> None:
    spool = Spool.open(small_disk / "spool")
    acknowledged: list[bytes] = []
    failure: SpoolWriteError | None = None
    try:
        for i in range(1000):  # 4 KiB each: about 16 times the disk
            body = f"{i:06d}".encode() * 700
            try:
                await asyncio.wait_for(spool.append(body), 5)
            except SpoolWriteError as error:
                failure = error
                break
            acknowledged.append(body)
        assert failure is not None
        assert "SQLITE_FULL" in str(failure)
        assert acknowledged
        rows = spool.read(10_000)
        assert _bodies(rows) == acknowledged
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
    finally:
        spool.close()


class TestReading:
    async def test_records_are_read_oldest_first_and_deleted_through_a_sequence_number(
        self, spool: Spool
    ) -> None:
        for i in range(5):
            await spool.append(f"r{i}".encode())
        first = spool.read(3)
        assert [bodies for _, bodies in first] == [[b"r0"], [b"r1"], [b"r2"]]  # a commit each
        assert [seq for seq, _ in first] == sorted(seq for seq, _ in first)
        spool.delete_through(first[1][0])
        assert spool.pending() == 3
        assert _bodies(spool.read(10)) == [b"r2", b"r3", b"r4"]

    async def test_a_commit_is_one_row_and_is_never_split_by_a_read(self, spool: Spool) -> None:
        lock = _WriteLock(spool.path)
        appends = [asyncio.create_task(spool.append(f"r{i}".encode())) for i in range(10)]
        await _started(*appends)
        lock.release()
        await asyncio.wait_for(asyncio.gather(*appends), 10)
        assert spool.commits <= 2  # one blocked with a record, the next with the rest
        rows = spool.read(3)
        assert [len(bodies) for _, bodies in rows] == [
            len(bodies) for _, bodies in spool.read(10)
        ][: len(rows)]  # whole commits, as many as reach three records
        assert sum(len(bodies) for _, bodies in rows) >= 3
        assert sorted(_bodies(spool.read(10))) == sorted(f"r{i}".encode() for i in range(10))
        assert spool.pending() == 10

    def test_records_spooled_by_the_earlier_row_per_record_layout_are_read(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "0123abcd.sqlite3"
        with sqlite3.connect(path) as conn:  # the layout before a row held a whole commit
            conn.execute("CREATE TABLE records "
                         "(seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)")
            conn.executemany("INSERT INTO records (body) VALUES (?)", [(b"old-0",), (b"old-1",)])
        adopted = Spool.adopt(path)
        try:
            assert adopted.pending() == 2
            assert adopted.read(10) == [(1, [b"old-0"]), (2, [b"old-1"])]
        finally:
            adopted.close()

    async def test_sequence_numbers_are_not_reused_after_everything_is_deleted(
        self, spool: Spool
    ) -> None:
        await spool.append(b"a")
        [(seq, _)] = spool.read(1)
        spool.delete_through(seq)
        await spool.append(b"b")
        assert spool.read(1)[0][0] > seq

    def test_the_spool_directory_is_private(self, spool: Spool) -> None:
        assert stat.S_IMODE(spool.path.parent.stat().st_mode) == 0o700


class TestBacklog:
    """``pending_in``: what the metrics page reports as waiting to ship, from every spool."""

    async def test_counts_the_records_of_live_and_closed_spools_not_yet_deleted(
        self, tmp_path: Path
    ) -> None:
        directory = tmp_path / "spool"
        live, closed = Spool.open(directory), Spool.open(directory)
        try:
            await asyncio.gather(*(live.append(f"l{i}".encode()) for i in range(7)))
            for i in range(3):
                await closed.append(f"c{i}".encode())
            closed.close()  # its process ended: an orphan with three records
            assert pending_in(directory) == 10
            shipped = live.read(2)  # whole commits, two records or more
            live.delete_through(shipped[-1][0])
            assert pending_in(directory) == 10 - len(_bodies(shipped))
        finally:
            live.close()

    def test_a_directory_without_spools_or_with_an_unwritten_one_counts_none(
        self, tmp_path: Path
    ) -> None:
        assert pending_in(tmp_path / "missing") == 0
        (tmp_path / "0123abcd.sqlite3").touch()  # created, then the process was killed
        assert pending_in(tmp_path) == 0


class TestOrphans:
    def test_a_spool_held_by_a_live_process_is_no_orphan_until_that_process_is_killed(
        self, tmp_path: Path
    ) -> None:
        directory = tmp_path / "spool"
        child = Child("hold", str(directory), "3")
        try:
            child.expect("ready")
            path = Path(child.lines[-1].split(" ", 1)[1])
            assert orphans(directory) == []
            with pytest.raises(SpoolInUseError):
                Spool.adopt(path)
        finally:
            child.kill()
        assert orphans(directory) == [path]

        adopted = Spool.adopt(path)
        assert orphans(directory) == []  # adopted: held again
        rows = adopted.read(10)
        assert _bodies(rows) == [b"held-0", b"held-1", b"held-2"]
        assert not adopted.remove_if_empty()  # records left: kept
        adopted.delete_through(rows[-1][0])
        assert adopted.remove_if_empty()
        assert list(directory.iterdir()) == []

    def test_a_spool_left_before_its_first_statement_is_adopted_and_removed(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "0123abcd.sqlite3").touch()  # created, then the process was killed
        [path] = orphans(tmp_path)
        adopted = Spool.adopt(path)
        assert adopted.read(10) == []
        assert adopted.remove_if_empty()
        assert list(tmp_path.iterdir()) == []

    def test_this_process_s_own_open_spool_is_no_orphan(self, spool: Spool) -> None:
        assert orphans(spool.path.parent) == []
        with pytest.raises(SpoolInUseError):
            Spool.adopt(spool.path)

    def test_only_an_adopted_spool_is_removed(self, spool: Spool) -> None:
        with pytest.raises(SpoolError):
            spool.remove_if_empty()

    def test_a_closed_spool_is_an_orphan_and_an_adopter_can_remove_it(
        self, tmp_path: Path
    ) -> None:
        spool = Spool.open(tmp_path / "spool")
        spool.close()
        assert orphans(tmp_path / "spool") == [spool.path]
        assert Spool.adopt(spool.path).remove_if_empty()
        assert orphans(tmp_path / "spool") == []
        with pytest.raises(FileNotFoundError):
            Spool.adopt(spool.path)  # gone: not recreated empty


def test_every_acknowledged_record_survives_sigkill_of_its_process(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    total = 200_000
    child = Child("append", str(directory), str(total), "16")
    try:
        child.expect("ready")
        child.expect("acked ", count=500)
    finally:
        lines = child.kill()
    acked = {f"record-{line.split()[1]}".encode() for line in lines if line.startswith("acked ")}
    assert 500 <= len(acked) < total  # killed mid-run
    [path] = orphans(directory)
    adopted = Spool.adopt(path)
    try:
        stored = _bodies(adopted.read(total))
    finally:
        adopted.close()
    assert len(stored) == len(set(stored))
    assert acked <= set(stored)
    assert set(stored) <= {f"record-{i}".encode() for i in range(total)}


def test_a_spool_file_s_process_holds_its_lock_in_a_sibling_file(spool: Spool) -> None:
    lock = spool.path.with_suffix(".lock")
    assert lock.exists()
    fd = os.open(lock, os.O_RDWR)
    try:
        import fcntl  # noqa: PLC0415 - only this test takes the lock by hand

        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
