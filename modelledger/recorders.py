"""Event recorders that insert a batch and skip events already stored (idempotent ingest).

The library's ``insert_events`` fails the whole transaction on the first duplicate. Usage
ingest instead wants "store the new ones, tell me which were duplicates", in one transaction,
so the store's uniqueness constraint still decides what counts as a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier


class InsertsNewEvents(Protocol):
    def insert_new_events(self, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        """Insert the events not stored yet; return the originator ids that were inserted."""
        ...  # pragma: no cover


class PostgresUsageRecorder(PostgresApplicationRecorder):
    """Adds one-statement ``INSERT ... ON CONFLICT DO NOTHING`` under the library's table lock."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.insert_new_events_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "ON CONFLICT DO NOTHING RETURNING originator_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )

    def insert_new_events(self, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        if not stored_events:
            return set()
        columns = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            # Same lock as the library's insert: notification ids commit in order.
            self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(self.insert_new_events_statement, columns, prepare=True)
            return {row["originator_id"] for row in curs.fetchall()}


class SQLiteUsageRecorder(SQLiteApplicationRecorder):
    """``INSERT OR IGNORE`` row by row inside one write transaction."""

    def insert_new_events(self, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        inserted: set[UUID] = set()
        statement = f"INSERT OR IGNORE INTO {self.events_table_name} VALUES (?,?,?,?)"  # noqa: S608
        with self.datastore.transaction(commit=True) as c:
            for e in stored_events:
                originator_id = e.originator_id
                key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
                c.execute(statement, (key, e.originator_version, e.topic, e.state))
                if c.sqlite_cursor.rowcount == 1:
                    inserted.add(UUID(str(originator_id)))
        return inserted
