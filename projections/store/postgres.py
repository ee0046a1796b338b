"""The read store on PostgreSQL: a psycopg pool, advisory locks and array-based bulk SQL.

Batches are written with one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO UPDATE``
per table, and existing rows are fetched with one join against ``unnest`` of the keys.
"""

from __future__ import annotations

import select
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

import msgspec
from psycopg_pool import ConnectionPool

from projections.locks import Namespace, take_xact_lock
from projections.store.base import Cursor, ReadStore

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from projections.table import Table

_ARRAY_TYPES = {
    "uuid": "uuid[]", "text": "text[]", "int": "bigint[]", "bool": "boolean[]",
    "ts": "timestamptz[]", "bytes": "bytea[]",
}


class PostgresStore(ReadStore):
    backend = "postgres"
    index_includes = True
    type_names = {  # noqa: RUF012
        "uuid": "UUID", "text": "TEXT", "int": "BIGINT", "bool": "BOOLEAN",
        "ts": "TIMESTAMPTZ", "bytes": "BYTEA",
    }

    def __init__(self, conninfo: str, *, schema: str = "public", pool_size: int = 8) -> None:
        super().__init__()
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True, "options": f"-c search_path={schema}"},
            name="modelledger-read",
            # A connection the server ended (a restart) is replaced before it is lent, instead
            # of failing a request with each.
            check=_check_connection,
        )
        self.pool.open(wait=True, timeout=30)
        self.schema = schema

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def row_from_db(self, values: Sequence[Any], kinds: Sequence[str]) -> Sequence[Any]:
        del kinds  # psycopg already returns every logical type as the Python value it stands for
        return values

    @contextmanager
    def write(self, lock_name: str) -> Iterator[Cursor]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            self.lock(cur, lock_name)
            yield cur

    def lock(self, cur: Cursor, name: str) -> None:
        take_xact_lock(cur, Namespace.PROJECTION, self.schema, name)

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield cur

    def close(self) -> None:
        self.pool.close()

    def table_exists(self, cur: Cursor, name: str) -> bool:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(cur.fetchone()[0])

    def any_of(self, values: Sequence[Any], kind: str) -> tuple[str, list[Any]]:
        # One parameter whatever the count, and the same text every time (psycopg prepares it
        # once): an IN list of 500 placeholders is re-parsed by psycopg at every call.
        del kind
        return "= ANY(?)", [list(values)]

    def fetch_rows(
        self, cur: Cursor, table: Table, keys: Sequence[tuple[Any, ...]], columns: Sequence[str]
    ) -> dict[tuple[Any, ...], Sequence[Any]]:
        kinds = dict(table.columns)
        key_arrays = ", ".join(f"%b::{_ARRAY_TYPES[kinds[name]]}" for name in table.key)
        key_names = ", ".join(table.key)
        cur.execute(
            f"SELECT {key_names}, {', '.join(columns)} FROM {table.name} "
            f"JOIN unnest({key_arrays}) AS k({key_names}) USING ({key_names})",
            [list(column) for column in zip(*keys, strict=True)],
        )
        width = len(table.key)
        return {tuple(row[:width]): row[width:] for row in cur.fetchall()}

    def upsert(self, cur: Cursor, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        # One JSON document per batch: msgspec encodes it in C (bytes as base64) and
        # PostgreSQL's json_to_recordset parses it in C: several times faster than arrays.
        names = table.column_names
        kinds = dict(table.columns)
        struct = _row_struct(table)
        record = ", ".join(
            f"{n} {'text' if kinds[n] == 'bytes' else self.type_names[kinds[n]]}" for n in names
        )
        values = ", ".join(
            f"decode(r.{n}, 'base64')" if kinds[n] == "bytes" else f"r.{n}" for n in names
        )
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in table.key)
        cur.execute(
            f"INSERT INTO {table.name} ({', '.join(names)}) "
            f"SELECT {values} FROM json_to_recordset(%s::json) AS r({record}) "
            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}",
            (_json.encode([struct(*row) for row in rows]).decode(),),
        )


_json = msgspec.json.Encoder()


@cache
def _row_struct(table: Table) -> type[msgspec.Struct]:
    return msgspec.defstruct(f"{table.name}_row", [(n, Any) for n in table.column_names])


def server_may_have_ended(conn: Any) -> bool:
    """Whether a pooled connection needs a round-trip check: an idle connection has nothing to
    read unless the server ended it (a restart or termination sends an error, then closes
    the socket), so a poll with no timeout tells, without the round trip (~50 us of CPU per
    checkout, as much as a short read)."""
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


def _check_connection(conn: Any) -> None:
    if server_may_have_ended(conn):
        ConnectionPool.check_connection(conn)  # raises for a dead one: the pool replaces it
