"""The read store on SQLite: one file, WAL mode, one connection per thread.

``BEGIN IMMEDIATE`` takes SQLite's single write lock, which is the projection lock too: two
processors of a projection cannot interleave, whichever process they run in.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from projections.store.base import Cursor, ReadStore, timestamp_text

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from projections.table import Table


class SQLiteStore(ReadStore):
    backend = "sqlite"
    type_names = {  # noqa: RUF012
        "uuid": "TEXT", "text": "TEXT", "int": "INTEGER", "bool": "INTEGER",
        "ts": "TEXT", "bytes": "BLOB",
    }

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Cursor]:
        conn = self._connection()
        cur = conn.cursor()
        cur.execute(begin)
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    def write(self, lock_name: str) -> Any:
        del lock_name  # SQLite's one write lock excludes every other writer
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> Any:
        return self._transaction("BEGIN")

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def table_exists(self, cur: Cursor, name: str) -> bool:
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return cur.fetchone() is not None

    def to_db(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        if kind == "uuid":
            return str(value)
        if kind == "ts":
            return timestamp_text(value)
        return value

    def from_db(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        if kind == "uuid":
            return UUID(value)
        if kind == "ts":
            return datetime.fromisoformat(value)
        if kind == "bool":
            return bool(value)
        return value

    def any_of(self, values: Sequence[Any], kind: str) -> tuple[str, list[Any]]:
        return f"IN ({', '.join('?' * len(values))})", [self.to_db(v, kind) for v in values]

    def fetch_rows(
        self, cur: Cursor, table: Table, keys: Sequence[tuple[Any, ...]], columns: Sequence[str]
    ) -> dict[tuple[Any, ...], Sequence[Any]]:
        kinds = dict(table.columns)
        column_kinds = [kinds[name] for name in columns]
        where = " AND ".join(f"{name} = ?" for name in table.key)
        statement = f"SELECT {', '.join(columns)} FROM {table.name} WHERE {where}"
        found: dict[tuple[Any, ...], Sequence[Any]] = {}
        for key in keys:
            cur.execute(
                statement, [self.to_db(v, kinds[n]) for v, n in zip(key, table.key, strict=True)]
            )
            row = cur.fetchone()
            if row is not None:
                found[key] = self.row_from_db(row, column_kinds)
        return found

    def upsert(self, cur: Cursor, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        kinds = [kind for _, kind in table.columns]
        marks = ", ".join("?" * len(kinds))
        cur.executemany(
            f"INSERT OR REPLACE INTO {table.name} VALUES ({marks})",
            [[self.to_db(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows],
        )
