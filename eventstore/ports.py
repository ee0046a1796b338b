"""What the usage log's two backends (``postgres``, ``sqlite``) offer beyond the library.

Idempotent inserts (``InsertsNewEvents``), and usage compaction: read raw usage events, then
swap them for roll-ups.

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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Notification, StoredEvent

# Ids of compacted raw usage events: both insert paths treat an id found there as a duplicate,
# so a retried request is never counted twice even after its raw event is gone.
COMPACTED_IDS_TABLE = "usage_compacted_ids"
RawRow = tuple[int, str, bytes]  # (notification id, usage id as canonical text, state)


class InsertsNewEvents(Protocol):
    """The library's ``insert_events`` fails the whole transaction on the first duplicate;
    usage ingest wants "store the new ones, tell me which were duplicates", in one
    transaction, so the store's uniqueness constraint still decides what is a duplicate."""

    def insert_new_events(self, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        """Insert the events not stored yet; return the originator ids that were inserted."""
        ...  # pragma: no cover


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


def bounds(ranges: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    return [lo for lo, _ in ranges], [hi for _, hi in ranges]


def hex_of(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id
