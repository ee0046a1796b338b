"""``NameClaim``: one aggregate per (owner, name) so that names are unique without races.

Two concurrent registrations of the same name both try to create (or advance) the same claim
aggregate; the event store's uniqueness constraint lets exactly one of them commit.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import NameTakenError


def name_claim_id(owner_id: UUID, name: str) -> UUID:
    """The claim's id: names compare case-insensitively per owner."""
    return uuid5(NAMESPACE_URL, f"modelledger:name:{owner_id}:{name.casefold()}")


class NameClaim(Aggregate):
    """Who (which model) holds a name of an owner right now."""

    class Claimed(Aggregate.Created):
        owner_id: UUID
        name: str
        model_id: UUID

    class Reclaimed(Aggregate.Event):
        model_id: UUID

    class Released(Aggregate.Event):
        model_id: UUID

    @event(Claimed)
    def __init__(self, owner_id: UUID, name: str, model_id: UUID) -> None:
        self.owner_id = owner_id
        self.name = name
        self.holder: UUID | None = model_id

    @classmethod
    def claim(cls, owner_id: UUID, name: str, model_id: UUID) -> NameClaim:
        return cls._create(
            cls.Claimed,
            id=name_claim_id(owner_id, name),
            owner_id=owner_id,
            name=name,
            model_id=model_id,
        )

    def reclaim(self, model_id: UUID) -> None:
        if self.holder is not None and self.holder != model_id:
            raise NameTakenError(f"name {self.name!r} is already used by another model")
        if self.holder is None:
            self._reclaimed(model_id=model_id)

    def release(self, model_id: UUID) -> None:
        if self.holder == model_id:
            self._released(model_id=model_id)

    @event(Reclaimed)
    def _reclaimed(self, model_id: UUID) -> None:
        self.holder = model_id

    @event(Released)
    def _released(self, model_id: UUID) -> None:  # noqa: ARG002 - event attribute (@event)
        self.holder = None
