"""``UsageLedger``: the application service that appends prediction-usage events."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from uuid import UUID

from eventsourcing.application import Application

from modelledger.mapper import MsgspecMapper

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Mapper

    from domain.usage import PredictionUsage
    from modelledger.recorders import InsertsNewEvents


class UsageLedger(Application[UUID]):
    """Usage has its own event log: ingest never waits on the model registry's table lock."""

    name = "UsageLedger"

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()

    def record(self, events: Sequence[PredictionUsage.Recorded]) -> set[UUID]:
        """Append the events in one transaction, skipping requests already recorded.

        Returns the ids of the events stored now; the others were duplicates.
        """
        stored = [self.mapper.to_stored_event(e) for e in events]
        return cast("InsertsNewEvents", self.recorder).insert_new_events(stored)
