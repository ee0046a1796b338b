"""The read store port: connections, tracking positions, DDL and the swap of a rebuild.

One subclass per backend (``store.sqlite``, ``store.postgres``) owns the connection handling,
locking and bulk SQL; the read models' writers and queries (``projections.models``,
``projections.usage``) use only this port. SQL is written with ``?`` placeholders; the
PostgreSQL store rewrites them to ``%s``.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from projections.catalogue import PROJECTION_TABLES, SCHEMA_VERSIONS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from contextlib import AbstractContextManager

    from projections.table import Table

NEXT = "__next"  # suffix of the tables a rebuild builds aside
# SQL in the store's parameter style and its parameters.
Statement = tuple[str, list[Any]]


def timestamp_text(value: datetime) -> str:
    """A time as UTC text of fixed width, so that text order is time order (the SQLite store's
    times, the dashboard's session expiries). Not ``%Y``: glibc leaves years before 1000
    unpadded ("800-02-29"), which neither sorts nor parses back."""
    utc = value.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}+00:00"


class Cursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class SchemaMismatchError(RuntimeError):
    """Projection tables were built by another schema version of the code."""


class ReadStore(ABC):
    """Projection tables of one database, with their tracking rows."""

    backend: str
    type_names: Mapping[str, str]
    index_includes = False  # indexes may hold non-key columns (``Table.key_includes``)

    def __init__(self) -> None:
        # Per-writer state kept between batches (``usage.writer``'s row cache), by name.
        self.writer_caches: dict[str, Any] = {}

    # -- connections, supplied by each backend ---------------------------------------------

    @abstractmethod
    def write(self, lock_name: str) -> AbstractContextManager[Cursor]:
        """A write transaction that excludes every other writer of ``lock_name`` until it ends."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Cursor]:
        """A read-only transaction (one consistent snapshot)."""

    @abstractmethod
    def table_exists(self, cur: Cursor, name: str) -> bool: ...

    @abstractmethod
    def fetch_rows(
        self, cur: Cursor, table: Table, keys: Sequence[tuple[Any, ...]], columns: Sequence[str]
    ) -> dict[tuple[Any, ...], Sequence[Any]]:
        """``columns`` of the existing rows among ``keys`` (both in Python types), by key."""

    @abstractmethod
    def any_of(self, values: Sequence[Any], kind: str) -> tuple[str, list[Any]]:
        """An SQL condition's right-hand side matching any of ``values``, and its parameters."""

    @abstractmethod
    def upsert(self, cur: Cursor, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        """Insert or wholly replace rows given in Python types, in column order."""

    @abstractmethod
    def close(self) -> None: ...

    def lock(self, cur: Cursor, name: str) -> None:
        """Also take the write lock of ``name`` in the caller's write transaction.

        A no-op where the write transaction itself excludes every other writer (SQLite).
        """
        del cur, name

    def sql(self, statement: str) -> str:
        """Adapt a ``?``-placeholder statement to the backend."""
        return statement

    def to_db(self, value: Any, kind: str) -> Any:  # noqa: ARG002 - backends convert by kind
        return value

    def from_db(self, value: Any, kind: str) -> Any:  # noqa: ARG002 - backends convert by kind
        return value

    def row_from_db(self, values: Sequence[Any], kinds: Sequence[str]) -> Sequence[Any]:
        """``from_db`` of each value of a row."""
        return [self.from_db(v, k) for v, k in zip(values, kinds, strict=True)]

    # -- schema -------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the tracking table and any missing projection tables."""
        with self.write("setup") as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS projection_state ("
                "name TEXT PRIMARY KEY, position BIGINT NOT NULL, "
                "schema_version INTEGER NOT NULL, updated_at TEXT NOT NULL)"
            )
            for projection in PROJECTION_TABLES:
                self.create_tables(cur, projection, "")

    def create_tables(self, cur: Cursor, projection: str, suffix: str) -> None:
        created = False
        for table in PROJECTION_TABLES[projection]:
            if not self.table_exists(cur, table.name + suffix):
                for statement in self.ddl(table, suffix):
                    cur.execute(statement)
                created = True
        if created and self._state(cur, projection + suffix) is None:
            self.set_position(cur, projection + suffix, 0)

    def drop_tables(self, cur: Cursor, projection: str, suffix: str) -> None:
        for table in PROJECTION_TABLES[projection]:
            cur.execute(f"DROP TABLE IF EXISTS {table.name}{suffix}")
        cur.execute(self.sql("DELETE FROM projection_state WHERE name = ?"), (projection + suffix,))

    def swap_in(self, cur: Cursor, projection: str) -> None:
        """Replace the live tables by the ones built aside, in the caller's transaction."""
        state = self._state(cur, projection + NEXT)
        if state is None:
            raise AssertionError("nothing was built aside")
        for table in PROJECTION_TABLES[projection]:
            cur.execute(f"DROP TABLE IF EXISTS {table.name}")
            cur.execute(f"ALTER TABLE {table.name}{NEXT} RENAME TO {table.name}")
        cur.execute(self.sql("DELETE FROM projection_state WHERE name = ?"), (projection + NEXT,))
        self.set_position(cur, projection, state[0])

    def ddl(self, table: Table, suffix: str) -> list[str]:
        generation = secrets.token_hex(4)  # index names must stay unique across swaps
        columns = ", ".join(
            f"{name} {self.type_names[kind]}"
            + (" NOT NULL" if name in table.key or name in table.not_null else "")
            for name, kind in table.columns
        )
        statements = [
            (
                f"CREATE TABLE {table.name}{suffix} ({columns}, "
                f"CONSTRAINT pk_{table.name}_{generation} PRIMARY KEY ({', '.join(table.key)})"
                + (f" INCLUDE ({', '.join(table.key_includes)}))"
                   if table.key_includes and self.index_includes else ")")
            )
        ]
        statements += [
            f"CREATE INDEX ix_{table.name}_{purpose}_{generation} "
            f"ON {table.name}{suffix} ({', '.join(columns)})"
            for purpose, columns in table.indexes
        ]
        return statements

    def check_schema(self) -> list[str]:
        """Projections whose tables were built by another schema version than this code's."""
        with self.read() as cur:
            cur.execute("SELECT name, schema_version FROM projection_state")
            stored = dict(cur.fetchall())
        return [
            name
            for name, version in SCHEMA_VERSIONS.items()
            if name in stored and stored[name] != version
        ]

    # -- tracking -----------------------------------------------------------------------

    def _state(self, cur: Cursor, tracking_name: str) -> tuple[int, int] | None:
        cur.execute(
            self.sql("SELECT position, schema_version FROM projection_state WHERE name = ?"),
            (tracking_name,),
        )
        row = cur.fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def position(self, cur: Cursor, tracking_name: str) -> int:
        state = self._state(cur, tracking_name)
        return 0 if state is None else state[0]

    def set_position(self, cur: Cursor, tracking_name: str, position: int) -> None:
        projection = tracking_name.removesuffix(NEXT)
        cur.execute(
            self.sql(
                "INSERT INTO projection_state (name, position, schema_version, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "position = excluded.position, schema_version = excluded.schema_version, "
                "updated_at = excluded.updated_at"
            ),
            (tracking_name, position, SCHEMA_VERSIONS[projection], _now_text()),
        )

    def positions(self) -> dict[str, tuple[int, int, str]]:
        """Tracking rows: name -> (position, schema version, updated at)."""
        with self.read() as cur:
            cur.execute("SELECT name, position, schema_version, updated_at FROM projection_state")
            return {row[0]: (int(row[1]), int(row[2]), str(row[3])) for row in cur.fetchall()}

def _now_text() -> str:
    return datetime.now(UTC).isoformat()
