"""Backend SQL of usage compaction: read raw usage events, then swap them for roll-ups.

``replace`` is the only writer: in ONE transaction it records the compacted usage ids for
request-id idempotency, then, under the same lock the usage recorders take to insert
(``LOCK TABLE ... IN EXCLUSIVE MODE`` on PostgreSQL, the database's write lock on SQLite),
deletes the raw events and earlier roll-ups of a chunk and inserts the new roll-ups at the
notification ids of the newest events they replace. The ids are recorded before the lock so
that ingest waits only for the deletes and inserts: they are invisible until the commit, and a
retried request meanwhile still conflicts with its raw event, which the lock keeps until then.
Reusing ids keeps every tracking position meaningful, and on SQLite it means the newest row's
``rowid`` is never freed (SQLite would hand it out again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification, StoredEvent
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from modelledger.recorders import COMPACTED_IDS_TABLE, PostgresUsageRecorder, SQLiteUsageRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence

_SQLITE_MAX_PARAMS = 500


RawRow = tuple[int, str, bytes]  # (notification id, usage id as canonical text, state)


@dataclass(frozen=True)
class Replacement:
    """What one chunk's transaction changes.

    The compacted raw events are given as inclusive notification-id ranges of one topic, so
    the database deletes them and records their ids itself: no per-event parameters.
    """

    raw_topic: str
    raw_ranges: Sequence[tuple[int, int]]  # every ``raw_topic`` event in them is compacted
    delete_ids: Sequence[int]  # notification ids of superseded roll-ups
    rollups: Sequence[tuple[int, StoredEvent]]  # (notification id to take, roll-up)


class CompactionRecorder(Protocol):
    def select_raw(self, after: int, through: int, limit: int, topic: str) -> Sequence[RawRow]:
        """Events of ``topic`` with ``after < id <= through`` in id order."""
        ...  # pragma: no cover

    def select_by_originator(self, originator_ids: Sequence[UUID]) -> Sequence[Notification]:
        """The stored events (with notification ids) of the given originators."""
        ...  # pragma: no cover

    def replace(self, change: Replacement) -> float:
        """Apply one chunk's change in one transaction; returns how long it held the insert lock."""
        ...  # pragma: no cover

    def live_bytes(self) -> int | None:
        """Size of the events table, its indexes and the compacted-ids table (PostgreSQL)."""
        ...  # pragma: no cover


def _bounds(ranges: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    return [lo for lo, _ in ranges], [hi for _, hi in ranges]


class PostgresCompaction:
    def __init__(self, recorder: PostgresUsageRecorder) -> None:
        self.recorder = recorder
        f = {
            "schema": Identifier(recorder.datastore.schema),
            "table": Identifier(recorder.events_table_name),
            "compacted": Identifier(COMPACTED_IDS_TABLE),
        }
        self.schema = f["schema"]
        self.table = f["table"]
        self.compacted = f["compacted"]
        self.select_raw_statement = SQL(
            "SELECT notification_id, originator_id::text, state FROM {schema}.{table} "
            "WHERE notification_id > %b AND notification_id <= %b AND topic = %b "
            "ORDER BY notification_id LIMIT %b"
        ).format(**f)
        # Outside the insert lock: invisible to ingest until the transaction commits.
        self.record_ids_statement = SQL(
            "INSERT INTO {schema}.{compacted} (originator_id) "
            "SELECT e.originator_id FROM unnest(%b::int8[], %b::int8[]) AS r(lo, hi) "
            "JOIN {schema}.{table} e ON e.notification_id BETWEEN r.lo AND r.hi "
            # In key order the index's pages are visited once each, in sequence.
            "WHERE e.topic = %b ORDER BY 1 ON CONFLICT DO NOTHING"
        ).format(**f)
        self.delete_raw_statement = SQL(
            "DELETE FROM {schema}.{table} e USING unnest(%b::int8[], %b::int8[]) AS r(lo, hi) "
            "WHERE e.notification_id BETWEEN r.lo AND r.hi AND e.topic = %b"
        ).format(**f)
        self.delete_ids_statement = SQL(
            "DELETE FROM {schema}.{table} WHERE notification_id = ANY(%b::int8[])"
        ).format(**f)
        self.insert_rollups_statement = SQL(
            "INSERT INTO {schema}.{table} "
            "(notification_id, originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::int8[], %b::uuid[], %b::int8[], %b::text[], %b::bytea[])"
        ).format(**f)

    def select_raw(self, after: int, through: int, limit: int, topic: str) -> Sequence[RawRow]:
        with (
            self.recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            curs.execute(self.select_raw_statement, (after, through, topic, limit), prepare=True)
            return curs.fetchall()

    def select_by_originator(self, originator_ids: Sequence[UUID]) -> Sequence[Notification]:
        if not originator_ids:
            return []
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE originator_id = ANY(%b::uuid[])"
        ).format(schema=self.schema, table=self.table)
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (list(originator_ids),))
            return [
                Notification(
                    id=row["notification_id"],
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def replace(self, change: Replacement) -> float:
        lows, highs = _bounds(change.raw_ranges)
        with self.recorder.datastore.get_connection() as conn:
            with conn.transaction(), conn.cursor() as curs:
                if lows:
                    curs.execute(self.record_ids_statement, (lows, highs, change.raw_topic))
                locked = time.monotonic()
                self.recorder._lock_table(curs)  # noqa: SLF001 - the insert path's own lock
                self._swap(curs, change, lows, highs)
            return time.monotonic() - locked

    def _swap(self, curs: Any, change: Replacement, lows: list[int], highs: list[int]) -> None:
        if lows:
            curs.execute(self.delete_raw_statement, (lows, highs, change.raw_topic))
        if change.delete_ids:
            curs.execute(self.delete_ids_statement, (list(change.delete_ids),))
        if change.rollups:
            curs.execute(
                self.insert_rollups_statement,
                (
                    [n for n, _ in change.rollups],
                    [e.originator_id for _, e in change.rollups],
                    [e.originator_version for _, e in change.rollups],
                    [e.topic for _, e in change.rollups],
                    [e.state for _, e in change.rollups],
                ),
            )

    def live_bytes(self) -> int | None:
        schema = self.recorder.datastore.schema
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT pg_total_relation_size(format('%%I.%%I', %s::text, %s::text)::regclass) "
                "+ pg_total_relation_size(format('%%I.%%I', %s::text, %s::text)::regclass) AS n",
                (schema, self.recorder.events_table_name, schema, COMPACTED_IDS_TABLE),
            )
            row = curs.fetchone()
            return int(row["n"]) if row else None


class SQLiteCompaction:
    def __init__(self, recorder: SQLiteUsageRecorder) -> None:
        self.recorder = recorder
        self.table = recorder.events_table_name

    def select_raw(self, after: int, through: int, limit: int, topic: str) -> Sequence[RawRow]:
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, originator_id, state FROM {self.table} "
                "WHERE rowid > ? AND rowid <= ? AND topic = ? ORDER BY rowid LIMIT ?",
                (after, through, topic, limit),
            )
            return [(int(row[0]), str(UUID(row[1])), bytes(row[2])) for row in c.sqlite_cursor]

    def select_by_originator(self, originator_ids: Sequence[UUID]) -> Sequence[Notification]:
        found: list[Notification] = []
        with self.recorder.datastore.transaction(commit=False) as c:
            for start in range(0, len(originator_ids), _SQLITE_MAX_PARAMS):
                chunk = [i.hex for i in originator_ids[start : start + _SQLITE_MAX_PARAMS]]
                c.execute(
                    f"SELECT rowid, * FROM {self.table} "
                    f"WHERE originator_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                found += [
                    Notification(
                        id=row["rowid"],
                        originator_id=UUID(row["originator_id"]),
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=row["state"],
                    )
                    for row in c.fetchall()
                ]
        return found

    def replace(self, change: Replacement) -> float:
        ranges = [(lo, hi, change.raw_topic) for lo, hi in change.raw_ranges]
        locked = time.monotonic()
        # The first statement writes, so the transaction holds the write lock from its start.
        with self.recorder.datastore.transaction(commit=True) as c:
            c.sqlite_cursor.executemany(
                f"INSERT OR IGNORE INTO {COMPACTED_IDS_TABLE} SELECT originator_id "
                f"FROM {self.table} WHERE rowid BETWEEN ? AND ? AND topic = ?",
                ranges,
            )
            c.sqlite_cursor.executemany(
                f"DELETE FROM {self.table} WHERE rowid BETWEEN ? AND ? AND topic = ?",
                ranges,
            )
            c.sqlite_cursor.executemany(
                f"DELETE FROM {self.table} WHERE rowid = ?",
                [(i,) for i in change.delete_ids],
            )
            for notification_id, e in change.rollups:
                c.execute(
                    f"INSERT INTO {self.table} "
                    "(rowid, originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        notification_id,
                        _hex(e.originator_id),
                        e.originator_version,
                        e.topic,
                        e.state,
                    ),
                )
        return time.monotonic() - locked

    def live_bytes(self) -> int | None:
        return None


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


def compaction_recorder(recorder: ApplicationRecorder) -> CompactionRecorder:
    """The compaction SQL for the usage log's recorder."""
    if isinstance(recorder, PostgresUsageRecorder):
        return PostgresCompaction(recorder)
    if isinstance(recorder, SQLiteUsageRecorder):
        return SQLiteCompaction(recorder)
    raise TypeError(f"usage compaction does not support {type(recorder).__name__}")
