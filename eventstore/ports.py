"""What the usage log's two backends (``postgres``, ``sqlite``) offer beyond the library.

Idempotent inserts (``InsertsNewEvents``), and usage compaction: read raw usage events (single
``PredictionUsage.Recorded`` events and ``UsageBatch.Recorded`` batches of calls, in one
notification-id order), then swap them for roll-ups.

``replace`` is the only writer: in ONE transaction it records the compacted usage ids for
request-id idempotency, then, under the same lock the usage recorders take to insert
(``LOCK TABLE ... IN EXCLUSIVE MODE`` on PostgreSQL, the database's write lock on SQLite),
deletes the raw events (of both topics) and earlier roll-ups of a chunk and inserts the new
roll-ups at the notification ids of the newest events they replace. The ids are recorded
before the lock so that ingest waits only for the deletes and inserts: they are invisible
until the commit, and a retried request meanwhile still conflicts with its raw event, which
the lock keeps until then.
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
# Per spool (its file's uuid4 name), the last spool row stored: written in the transaction that
# stores the row's records, so a shipment repeated after a crash is recognised, not stored again.
SHIPMENTS_TABLE = "usage_shipments"
# A removed spool's mark: RETIRED_MARK + the removal's Unix time, past every row a spool can
# have, so a copy of its rows still in flight in another shipper stores nothing. Kept a week
# (a shipping attempt lasts seconds; the week covers a paused machine), then deleted, both
# by the event store's clock: the table holds the spools on disk and those removed in the last
# week, not every spool ever written.
RETIRED_MARK = 2**62
RETIRED_KEPT_SECONDS = 7 * 86_400
# (notification id, originator id as canonical text, state, topic): a usage event's id is its
# usage id, a batch's a random one.
RawRow = tuple[int, str, bytes, str]


class InsertsNewEvents(Protocol):
    """The library's ``insert_events`` fails the whole transaction on the first duplicate;
    usage ingest wants "store the new ones, tell me which were duplicates", in one
    transaction, so the store's uniqueness constraint still decides what is a duplicate."""

    def insert_new_events(self, stored_events: Sequence[StoredEvent]) -> set[UUID]:
        """Insert the events not stored yet; return the originator ids that were inserted."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class Shipment:
    """Rows ``first`` to ``last`` (sequence numbers, inclusive) of the local spool ``spool``."""

    spool: str
    first: int
    last: int


class InsertsShipments(Protocol):
    """A spool's records are stored exactly once by their shipment's mark, not by event ids:
    calls with generated request ids are batched, and a batch has no natural key."""

    def insert_shipment(
        self, stored_events: Sequence[StoredEvent], shipment: Shipment
    ) -> set[UUID] | None:
        """In one transaction, unless the spool's mark is at ``shipment.first`` or past it:
        insert the events (``insert_new_events``'s way) and set the mark to ``shipment.last``;
        return the ids inserted. ``None``: rows of this shipment were stored before, and
        nothing was (``shipped_through`` tells up to where)."""
        ...  # pragma: no cover

    def shipped_through(self, spool: str) -> int:
        """The spool's mark: its last row stored (0 before any)."""
        ...  # pragma: no cover

    def retire_shipments(self, spool: str, removed_at: int | None = None) -> None:
        """Once the spool's file is removed (at Unix time ``removed_at``; None: now, by the
        store's clock, which every host shares): set its mark past every row
        (``RETIRED_MARK``) and delete the marks of spools removed more than
        ``RETIRED_KEPT_SECONDS`` before; serialised with ``insert_shipment``."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class Replacement:
    """What one chunk's transaction changes.

    The compacted raw events are given as inclusive notification-id ranges over the raw
    topics (the ones ``select_raw`` read), so the database deletes them and records their ids
    itself: no per-event parameters. A batch's id is recorded too: nothing looks it up (a
    batch has a random id and is never stored again), but one topic filter serves both
    statements, and a chunk holds far fewer batches than calls.
    """

    raw_topics: Sequence[str]
    raw_ranges: Sequence[tuple[int, int]]  # every ``raw_topics`` event in them is compacted
    delete_ids: Sequence[int]  # notification ids of superseded roll-ups
    rollups: Sequence[tuple[int, StoredEvent]]  # (notification id to take, roll-up)


class CompactionRecorder(Protocol):
    def select_raw(
        self, after: int, through: int, limit: int, topics: Sequence[str]
    ) -> Sequence[RawRow]:
        """At most ``limit`` events of ``topics`` with ``after < id <= through``, in id order."""
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
