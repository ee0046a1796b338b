"""The local durable spool: opaque records appended on the serving path, read and deleted later.

One SQLite file per process (``<uuid4hex>.sqlite3``, WAL, ``synchronous=FULL``: a commit is on
disk when it returns), written by one thread that commits everything queued since its last
commit as one row, in one statement (group commit), so an append costs a queue put and an
await, and the fsync is shared by every request waiting at that moment. One row rather than a
row per record: each statement hands the interpreter lock back and forth with the serving
event loop, and a row per record made each commit wait for it a dozen times.

A sibling ``.lock`` file carries an exclusive ``flock`` for the owner's lifetime: a spool whose
lock nobody holds is an orphan (its process ended, perhaps by SIGKILL), and any process may
adopt it and ship what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

SUFFIX: Final = ".sqlite3"
LOCK_SUFFIX: Final = ".lock"
MAX_PENDING: Final = 50_000

# AUTOINCREMENT: a sequence number is never handed out twice, even once the table is empty.
# A row is one commit: ``body`` the MessagePack array of its records' bodies and ``n`` their
# number. Rows written before (``n`` NULL, the column added on opening) hold one body each.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records "
    "(seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL, n INTEGER)"
)
_HAS_N = "SELECT count(*) FROM pragma_table_info('records') WHERE name = 'n'"
_ADD_N = "ALTER TABLE records ADD COLUMN n INTEGER"
_INSERT = "INSERT INTO records (body, n) VALUES (?, ?)"
_SELECT = "SELECT seq, body, n FROM records ORDER BY seq LIMIT ?"
_DELETE = "DELETE FROM records WHERE seq <= ?"
_COUNT = "SELECT coalesce(sum(coalesce(n, 1)), 0) FROM records"
_encode_bodies = msgspec.msgpack.Encoder().encode
_decode_bodies = msgspec.msgpack.Decoder(list[bytes]).decode
_CLOSE: Final = object()  # the writer's last item: everything before it is committed first

_Waiter = tuple[bytes, "asyncio.Future[None]"]


class SpoolError(Exception):
    """Base of the spool's errors."""


class SpoolFullError(SpoolError):
    """Too many records wait for their commit: the caller should refuse the request (503)."""


class SpoolWriteError(SpoolError):
    """The record's transaction did not commit (disk full, I/O error, closed): not stored."""


class SpoolInUseError(SpoolError):
    """Another live process holds the spool's lock."""


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created if missing), or None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _connect(
    path: Path, *, create: bool, synchronous: str, busy_timeout: float
) -> sqlite3.Connection:
    # mode=rw for an adopted spool: a file removed meanwhile must not come back empty.
    uri = path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    old_mask = os.umask(0o077)  # the database, its WAL and shm: owner-only, whatever the umask
    try:
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        os.umask(old_mask)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def owner_alive(path: Path) -> bool:
    """Whether a process holds the lock of the spool at ``path``."""
    lock = path.with_suffix(LOCK_SUFFIX)
    if not lock.exists():
        return False
    fd = _try_lock(lock)
    if fd is None:
        return True
    os.close(fd)
    return False


def orphans(directory: Path) -> list[Path]:
    """Spool files in ``directory`` whose lock nobody holds (their process has ended)."""
    found = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        lock = path.with_suffix(LOCK_SUFFIX)
        fd = _try_lock(lock)
        if fd is None:
            continue
        try:
            if path.exists():
                found.append(path)
            else:  # removed by its adopter between the listing and the lock: a stray lock file
                lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return found


def pending_in(directory: Path) -> int:
    """Committed records not deleted yet in every spool of ``directory``, live or orphaned
    (read-only: a spool removed or not yet written meanwhile counts none)."""
    total = 0
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=1.0)
        except sqlite3.Error:
            continue
        try:
            total += int(conn.execute(_COUNT).fetchone()[0])
        except sqlite3.Error:  # no table yet (a process killed before its first statement)
            continue
        finally:
            conn.close()
    return total


class Spool:
    """An append-only spool of opaque records; ``open`` for a writer, ``adopt`` for an orphan."""

    def __init__(
        self,
        path: Path,
        lock_fd: int,
        *,
        writable: bool,
        max_pending: int = MAX_PENDING,
        on_commit: Callable[[], None] | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.max_pending = max_pending
        self.commits = 0  # transactions committed by the writer: group commit is observable
        self._lock_fd = lock_fd
        self._on_commit = on_commit
        self._closed = False
        self._state = threading.Lock()  # orders appends before the writer's close marker
        self._reading = threading.Lock()  # the reader connection serves any thread, one at a time
        # A lost delete only ships a record again (the event store ignores it), so the
        # reader need not fsync; every append must.
        self._reader = _connect(path, create=writable, synchronous="NORMAL",
                                busy_timeout=busy_timeout)
        # On adoption too: a process killed before its first statement left a file without it.
        self._reader.execute(_SCHEMA)
        if not self._reader.execute(_HAS_N).fetchone()[0]:  # written by an earlier version
            self._reader.execute(_ADD_N)
        self._queue: queue.SimpleQueue[_Waiter | object] = queue.SimpleQueue()
        self._in_flight = 0
        self._writer: threading.Thread | None = None
        if writable:
            conn = _connect(path, create=True, synchronous="FULL", busy_timeout=busy_timeout)
            self._writer = threading.Thread(
                target=self._write, args=(conn,), name=f"spool-writer-{path.stem[:8]}",
                daemon=True,
            )
            self._writer.start()

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        max_pending: int = MAX_PENDING,
        on_commit: Callable[[], None] | None = None,
        busy_timeout: float = 5.0,
    ) -> Spool:
        """A new spool file of this process in ``directory`` (created 0o700)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # also when it existed: records name callers' addresses
        name = uuid.uuid4().hex
        # The lock first: from the moment the file exists, nobody takes it for an orphan.
        fd = _try_lock(directory / f"{name}{LOCK_SUFFIX}")
        if fd is None:  # pragma: no cover - a fresh uuid4 name
            raise SpoolInUseError("a new spool's lock is held")
        try:
            return cls(directory / f"{name}{SUFFIX}", fd, writable=True, max_pending=max_pending,
                       on_commit=on_commit, busy_timeout=busy_timeout)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def adopt(cls, path: Path) -> Spool:
        """Take over an orphan to read and delete its records; ``SpoolInUseError`` if it is
        live or taken by another adopter, ``FileNotFoundError`` if it is gone."""
        fd = _try_lock(path.with_suffix(LOCK_SUFFIX))
        if fd is None:
            raise SpoolInUseError(f"spool {path.name} is in use")
        try:
            return cls(path, fd, writable=False)
        except sqlite3.OperationalError:
            gone = not path.exists()
            if gone:  # removed by its adopter meanwhile: the lock file just made is a stray
                path.with_suffix(LOCK_SUFFIX).unlink(missing_ok=True)
            os.close(fd)
            if gone:
                raise FileNotFoundError(path.name) from None
            raise
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, path: Path) -> Spool:
        """Read and delete the committed records of a spool its live owner keeps writing
        (from the one process that ships a data directory's spools); ``FileNotFoundError``
        if it is gone. Holds no lock: ``adopt`` it once its owner has ended."""
        try:
            return cls(path, -1, writable=False)
        except sqlite3.OperationalError:
            if not path.exists():
                raise FileNotFoundError(path.name) from None
            raise

    @property
    def attached(self) -> bool:
        """Opened by ``attach``: another process owns it."""
        return self._writer is None and self._lock_fd < 0 and not self._closed

    async def append(self, body: bytes) -> None:
        """Return once ``body`` is committed to disk; raise ``SpoolFullError`` at once when
        ``max_pending`` records already wait, ``SpoolWriteError`` when the commit fails."""
        if self._queue.qsize() + self._in_flight >= self.max_pending:
            raise SpoolFullError(f"more than {self.max_pending} usage records wait for disk")
        future = asyncio.get_running_loop().create_future()
        with self._state:
            if self._closed or self._writer is None:
                raise SpoolWriteError("the spool is closed or not writable")
            self._queue.put((body, future))
        await future

    def _write(self, conn: sqlite3.Connection) -> None:
        try:
            closing = False
            while not closing:
                batch: list[_Waiter] = []
                item = self._queue.get()
                while True:  # everything queued since the last commit, in one transaction
                    if item is _CLOSE:
                        closing = True
                    else:
                        batch.append(item)  # type: ignore[arg-type]
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._in_flight = len(batch)
                    self._commit(conn, batch)
                    self._in_flight = 0
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Waiter]) -> None:
        error: str | None = None
        try:
            # Autocommit: the insert and its fsync in one statement.
            conn.execute(_INSERT, (_encode_bodies([body for body, _ in batch]), len(batch)))
        except Exception as failure:  # noqa: BLE001 - every failure is this batch's answer
            # SQLite's error name (SQLITE_FULL, SQLITE_IOERR...): says why, names no path.
            reason = getattr(failure, "sqlite_errorname", None) or type(failure).__name__
            error = f"usage spool commit failed: {reason}"
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        else:
            self.commits += 1
            if self._on_commit is not None:
                self._on_commit()
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, future in batch:
            by_loop.setdefault(future.get_loop(), []).append(future)
        for loop, futures in by_loop.items():
            # One wake-up per loop per commit, not one per record.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, futures, error)

    def read(self, limit: int) -> list[tuple[int, list[bytes]]]:
        """The oldest commits, as (sequence number, their records' bodies), until they hold
        ``limit`` records or more (a commit is never split)."""
        rows: list[tuple[int, list[bytes]]] = []
        count = 0
        with self._reading:
            for seq, body, n in self._reader.execute(_SELECT, (limit,)):
                rows.append((seq, [body] if n is None else _bodies(body)))
                count += len(rows[-1][1])
                if count >= limit:
                    break
        return rows

    def delete_through(self, seq: int) -> None:
        """Delete every commit up to and including sequence number ``seq``."""
        with self._reading:
            self._reader.execute(_DELETE, (seq,))

    def pending(self) -> int:
        """Committed records not deleted yet."""
        with self._reading:
            return int(self._reader.execute(_COUNT).fetchone()[0])

    def remove_if_empty(self) -> bool:
        """Close an adopted spool and delete its files if no record is left; False (and still
        open) otherwise."""
        if self._writer is not None or self.attached:
            raise SpoolError("only an adopted spool is removed; its own process closes a spool")
        if self._closed or self.pending():
            return False
        with self._reading:
            self._reader.close()
        # The database first: once it is gone nobody lists the spool, then what belongs to it.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.path.with_suffix(LOCK_SUFFIX).unlink(missing_ok=True)
        self._release()
        return True

    def close(self) -> None:
        """Commit what is queued, stop the writer, close, and release the lock."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            if self._writer is not None:
                self._queue.put(_CLOSE)
        if self._writer is not None:
            self._writer.join()
        with self._reading:
            self._reader.close()
        self._release()

    def _release(self) -> None:
        self._closed = True
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the only descriptor releases the flock
            self._lock_fd = -1


def _bodies(row: bytes) -> list[bytes]:
    try:
        return _decode_bodies(row)
    except msgspec.DecodeError:
        return [row]  # damaged: handed on as one record, which its reader cannot decode either


def _settle(futures: list[asyncio.Future[None]], error: str | None) -> None:
    for future in futures:
        if future.done():  # the request was cancelled meanwhile
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(SpoolWriteError(error))
