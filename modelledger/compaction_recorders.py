"""Backend SQL of usage compaction: read raw usage events, then swap them for roll-ups.

``replace`` is the only writer: in ONE transaction, under the same lock the usage recorders
take to insert (``LOCK TABLE ... IN EXCLUSIVE MODE`` on PostgreSQL, the database's write lock
on SQLite), it deletes the raw events and earlier roll-ups of a chunk, inserts the new roll-ups
at the notification ids of the newest events they replace, and records the compacted usage ids
for request-id idempotency. Reusing ids keeps every tracking position meaningful, and on SQLite
it means the newest row's ``rowid`` is never freed (SQLite would hand it out again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification, StoredEvent
from psycopg.sql import SQL, Identifier

from modelledger.recorders import COMPACTED_IDS_TABLE, PostgresUsageRecorder, SQLiteUsageRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence

_SQLITE_MAX_PARAMS = 500


@dataclass(frozen=True)
class Replacement:
    """What one chunk's transaction changes."""

    delete_ids: Sequence[int]  # notification ids of raw events and superseded roll-ups
    rollups: Sequence[tuple[int, StoredEvent]]  # (notification id to take, roll-up)
    compacted_usage_ids: Sequence[UUID]


class CompactionRecorder(Protocol):
    def select_raw(
        self, after: int, through: int, limit: int, topic: str
    ) -> Sequence[Notification]:
        """Events of ``topic`` with ``after < id <= through`` in id order."""
        ...  # pragma: no cover

    def select_by_originator(self, originator_ids: Sequence[UUID]) -> Sequence[Notification]:
        """The stored events (with notification ids) of the given originators."""
        ...  # pragma: no cover

    def replace(self, change: Replacement) -> None:
        """Apply one chunk's change in one transaction under the insert lock."""
        ...  # pragma: no cover

    def compacted_count(self) -> int: ...

    def live_bytes(self) -> int | None:
        """Size of the events table, its indexes and the compacted-ids table (PostgreSQL)."""
        ...  # pragma: no cover


class PostgresCompaction:
    def __init__(self, recorder: PostgresUsageRecorder) -> None:
        self.recorder = recorder
        self.schema = Identifier(recorder.datastore.schema)
        self.table = Identifier(recorder.events_table_name)
        self.compacted = Identifier(COMPACTED_IDS_TABLE)

    def select_raw(
        self, after: int, through: int, limit: int, topic: str
    ) -> Sequence[Notification]:
        return list(
            self.recorder.select_notifications(
                after, limit, stop=through, topics=[topic], inclusive_of_start=False
            )
        )

    def select_by_originator(self, originator_ids: Sequence[UUID]) -> Sequence[Notification]:
        if not originator_ids:
            return []
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE originator_id = ANY(%s::uuid[])"
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

    def replace(self, change: Replacement) -> None:
        f = {"schema": self.schema, "table": self.table, "compacted": self.compacted}
        with (
            self.recorder.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            self.recorder._lock_table(curs)  # noqa: SLF001 - the insert path's own lock
            curs.execute(
                SQL(
                    "DELETE FROM {schema}.{table} WHERE notification_id = ANY(%s::bigint[])"
                ).format(**f),
                (list(change.delete_ids),),
            )
            if change.rollups:
                curs.execute(
                    SQL(
                        "INSERT INTO {schema}.{table} "
                        "(notification_id, originator_id, originator_version, topic, state) "
                        "SELECT * FROM unnest(%s::bigint[], %s::uuid[], %s::bigint[], "
                        "%s::text[], %s::bytea[])"
                    ).format(**f),
                    (
                        [n for n, _ in change.rollups],
                        [e.originator_id for _, e in change.rollups],
                        [e.originator_version for _, e in change.rollups],
                        [e.topic for _, e in change.rollups],
                        [e.state for _, e in change.rollups],
                    ),
                )
            curs.execute(
                SQL(
                    "INSERT INTO {schema}.{compacted} SELECT unnest(%s::uuid[]) "
                    "ON CONFLICT DO NOTHING"
                ).format(**f),
                (list(change.compacted_usage_ids),),
            )

    def compacted_count(self) -> int:
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT count(*) AS n FROM {schema}.{compacted}").format(
                    schema=self.schema, compacted=self.compacted
                )
            )
            row = curs.fetchone()
            return int(row["n"]) if row else 0

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

    def select_raw(
        self, after: int, through: int, limit: int, topic: str
    ) -> Sequence[Notification]:
        return list(
            self.recorder.select_notifications(
                after, limit, stop=through, topics=[topic], inclusive_of_start=False
            )
        )

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

    def replace(self, change: Replacement) -> None:
        # The first statement writes, so the transaction holds the write lock from its start.
        with self.recorder.datastore.transaction(commit=True) as c:
            for start in range(0, len(change.delete_ids), _SQLITE_MAX_PARAMS):
                chunk = list(change.delete_ids[start : start + _SQLITE_MAX_PARAMS])
                c.execute(
                    f"DELETE FROM {self.table} WHERE rowid IN ({', '.join('?' * len(chunk))})",
                    chunk,
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
            c.sqlite_cursor.executemany(
                f"INSERT OR IGNORE INTO {COMPACTED_IDS_TABLE} VALUES (?)",
                [(i.hex,) for i in change.compacted_usage_ids],
            )

    def compacted_count(self) -> int:
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) AS n FROM {COMPACTED_IDS_TABLE}")
            return int(c.fetchone()["n"])

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
