"""Every lock the service takes across processes: advisory locks on PostgreSQL, files on SQLite.

Advisory locks are per database, so each key includes the schema: two deployments (or two
test schemas) in one database never lock each other out. The first key says what is locked.
"""

from __future__ import annotations

import contextlib
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import psycopg
from filelock import FileLock, Timeout

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Namespace(IntEnum):
    """The first key of an advisory lock ("ML" + what it guards)."""

    PROJECTION = 0x4D4C  # a projection's writes (transaction-scoped)
    LEADER = 0x4D4C + 1  # the worker processing a projection
    JOB = 0x4D4C + 2  # one run of a scheduler job
    DDL = 0x4D4C  # start-up DDL of the event store (key "ddl" never names a projection)


def lock_key(schema: str, name: str) -> str:
    """The text hashed into an advisory lock's second key."""
    return f"{schema}.{name}"


XACT_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(%s, hashtext(%s))"


def take_xact_lock(cur: Any, namespace: Namespace, schema: str, name: str) -> None:
    """Wait for ``name``'s lock, held until the caller's transaction ends."""
    cur.execute(XACT_LOCK_SQL, (int(namespace), lock_key(schema, name)))


def try_session_lock(
    conn: psycopg.Connection[Any], namespace: Namespace, schema: str, name: str
) -> bool:
    """Take ``name``'s lock for as long as ``conn`` lives, or return False at once."""
    row = conn.execute(TRY_LOCK_SQL, (int(namespace), lock_key(schema, name))).fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def session_lock(conninfo: str, namespace: Namespace, schema: str, name: str) -> Iterator[None]:
    """Hold ``name``'s lock, waiting for it, on a connection of its own."""
    key = (int(namespace), lock_key(schema, name))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)


def file_lock(directory: Path, name: str) -> FileLock:
    """The SQLite deployments' counterpart of an advisory lock: a file beside the databases."""
    directory.mkdir(parents=True, exist_ok=True)
    return FileLock(directory / f"{name}.lock")


@contextlib.contextmanager
def try_file_lock(directory: Path, name: str) -> Iterator[bool]:
    """Yield True while holding ``name``'s file lock, False (at once) when another holds it."""
    lock = file_lock(directory, name)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
