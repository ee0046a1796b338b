"""The two event logs, as ``eventsourcing`` applications configured with this package's mapper.

``RegistryLog`` holds models and name claims; ``UsageLog`` the usage: an event per reported or
named request, a batch event per shipment of the endpoint's calls with generated request ids.
Their names are the library's table names (``modelregistry_events``, ``usageledger_events``),
so they never change. The application services (``services/``) hold the rules; these only
store and load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from uuid import UUID

from eventsourcing.application import Application

from domain.model import Model
from eventstore.mapper import MsgspecMapper

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import Mapper

    from domain.usage import PredictionUsage
    from eventstore.ports import InsertsNewEvents, InsertsShipments, Shipment


class RegistryLog(Application[UUID]):
    """Models and name claims: low volume, optimistic concurrency per aggregate."""

    name = "ModelRegistry"
    snapshotting_intervals = {Model: 100}  # noqa: RUF012 - the library's class attribute

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()


class UsageLog(Application[UUID]):
    """Usage has its own event log: ingest never waits on the registry's table lock."""

    name = "UsageLedger"

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()

    def record(self, events: Sequence[PredictionUsage.Recorded]) -> set[UUID]:
        """Append the events in one transaction, skipping requests already recorded.

        Returns the ids of the events stored now; the others were duplicates.
        """
        stored = [self.mapper.to_stored_event(e) for e in events]
        return cast("InsertsNewEvents", self.recorder).insert_new_events(stored)

    def record_shipment(
        self, events: Sequence[DomainEventProtocol[UUID]], shipment: Shipment
    ) -> set[UUID] | None:
        """Append one shipment of a spool's records, unless it was stored before
        (``InsertsShipments``); the ids stored now, or ``None``."""
        stored = [self.mapper.to_stored_event(e) for e in events]
        return cast("InsertsShipments", self.recorder).insert_shipment(stored, shipment)

    def shipped_through(self, spool: str) -> int:
        """The last row of spool ``spool`` stored (0 before any)."""
        return cast("InsertsShipments", self.recorder).shipped_through(spool)

    def retire_spool(self, spool: str, removed_at: int | None = None) -> None:
        """Retire the mark of a spool whose file is removed (``InsertsShipments``)."""
        cast("InsertsShipments", self.recorder).retire_shipments(spool, removed_at)
