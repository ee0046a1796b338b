"""The usage log on SQLite: idempotent batch inserts and the compaction SQL.

The database's one write lock serialises inserts and the compaction swap.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.sqlite import SQLiteApplicationRecorder

from eventstore.ports import (
    COMPACTED_IDS_TABLE,
    RETIRED_KEPT_SECONDS,
    RETIRED_MARK,
    SHIPMENTS_TABLE,
    RawRow,
    Replacement,
    Shipment,
    hex_of,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteCursor

_SQLITE_MAX_PARAMS = 500


class SQLiteUsageRecorder(SQLiteApplicationRecorder):
    """``INSERT OR IGNORE`` row by row inside one write transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            (
                f"CREATE TABLE IF NOT EXISTS {COMPACTED_IDS_TABLE} "
                "(originator_id TEXT PRIMARY KEY) WITHOUT ROWID"
            ),
            (
                f"CREATE TABLE IF NOT EXISTS {SHIPMENTS_TABLE} "
                "(spool TEXT PRIMARY KEY, through INTEGER NOT NULL) WITHOUT ROWID"
            ),
        ]

    def insert_new_events(self, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        with self.datastore.transaction(commit=True) as c:
            return self._insert_new(c, stored_events)

    def insert_shipment(
        self, stored_events: Sequence[StoredEvent], shipment: Shipment
    ) -> set[UUID] | None:
        with self.datastore.transaction(commit=True) as c:
            # A write first: the transaction holds the write lock before it reads the mark
            # (a read first could not always be upgraded to a write in WAL mode).
            c.execute(
                f"INSERT OR IGNORE INTO {SHIPMENTS_TABLE} (spool, through) VALUES (?, 0)",
                (shipment.spool,),
            )
            c.execute(f"SELECT through FROM {SHIPMENTS_TABLE} WHERE spool = ?", (shipment.spool,))
            if int(c.fetchone()[0]) >= shipment.first:
                return None
            inserted = self._insert_new(c, stored_events)
            c.execute(
                f"UPDATE {SHIPMENTS_TABLE} SET through = ? WHERE spool = ?",
                (shipment.last, shipment.spool),
            )
            return inserted

    def shipped_through(self, spool: str) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT through FROM {SHIPMENTS_TABLE} WHERE spool = ?", (spool,))
            row = c.fetchone()
            return 0 if row is None else int(row[0])

    def retire_shipments(self, spool: str, removed_at: int | None = None) -> None:
        if removed_at is None:  # the embedded store's host is this one: its clock is ours
            removed_at = int(time.time())
        with self.datastore.transaction(commit=True) as c:  # a write first: the write lock
            c.execute(f"DELETE FROM {SHIPMENTS_TABLE} WHERE through >= ? AND through < ?",
                      (RETIRED_MARK, RETIRED_MARK + removed_at - RETIRED_KEPT_SECONDS))
            c.execute(f"INSERT OR REPLACE INTO {SHIPMENTS_TABLE} (spool, through) VALUES (?, ?)",
                      (spool, RETIRED_MARK + removed_at))

    def _insert_new(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        inserted: set[UUID] = set()
        statement = (
            f"INSERT OR IGNORE INTO {self.events_table_name} SELECT ?,?,?,? "
            f"WHERE NOT EXISTS (SELECT 1 FROM {COMPACTED_IDS_TABLE} WHERE originator_id = ?)"
        )
        for e in stored_events:
            originator_id = e.originator_id
            key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
            c.execute(statement, (key, e.originator_version, e.topic, e.state, key))
            if c.sqlite_cursor.rowcount == 1:
                inserted.add(UUID(str(originator_id)))
        return inserted


class SQLiteCompaction:
    def __init__(self, recorder: SQLiteUsageRecorder) -> None:
        self.recorder = recorder
        self.table = recorder.events_table_name

    def select_raw(
        self, after: int, through: int, limit: int, topics: Sequence[str]
    ) -> Sequence[RawRow]:
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, originator_id, state, topic FROM {self.table} "
                f"WHERE rowid > ? AND rowid <= ? AND topic IN ({self._marks(topics)}) "
                "ORDER BY rowid LIMIT ?",
                (after, through, *topics, limit),
            )
            return [
                (int(row[0]), str(UUID(row[1])), bytes(row[2]), row[3])
                for row in c.sqlite_cursor
            ]

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
        topics = self._marks(change.raw_topics)
        ranges = [(lo, hi, *change.raw_topics) for lo, hi in change.raw_ranges]
        locked = time.monotonic()
        # The first statement writes, so the transaction holds the write lock from its start.
        with self.recorder.datastore.transaction(commit=True) as c:
            c.sqlite_cursor.executemany(
                f"INSERT OR IGNORE INTO {COMPACTED_IDS_TABLE} SELECT originator_id "
                f"FROM {self.table} WHERE rowid BETWEEN ? AND ? AND topic IN ({topics})",
                ranges,
            )
            c.sqlite_cursor.executemany(
                f"DELETE FROM {self.table} WHERE rowid BETWEEN ? AND ? AND topic IN ({topics})",
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
                        hex_of(e.originator_id),
                        e.originator_version,
                        e.topic,
                        e.state,
                    ),
                )
        return time.monotonic() - locked

    def live_bytes(self) -> int | None:
        return None

    @staticmethod
    def _marks(values: Sequence[object]) -> str:
        return ", ".join("?" * len(values))
