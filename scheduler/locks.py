"""One run of a job at a time across processes and machines.

PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection of its own,
released when the run ends or the process dies. SQLite: a file lock beside the databases.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from filelock import FileLock, Timeout

from projections.postgres_store import LOCK_NAMESPACE, lock_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    from modelledger.settings import Settings

JOB_NAMESPACE = LOCK_NAMESPACE + 2  # +0 projections, +1 worker leadership


@contextmanager
def job_lock(settings: Settings, job: str) -> Iterator[bool]:
    """Yield True while holding ``job``'s lock, False (at once) when another run holds it."""
    if settings.backend == "sqlite":
        directory = Path(settings.data_dir) / "locks"
        directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(directory / f"job-{job}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
        return
    with psycopg.connect(settings.postgres_conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
            (JOB_NAMESPACE, lock_key(settings.pg_schema, job)),
        ).fetchone()
        yield bool(row and row[0])  # closing the connection releases the lock
