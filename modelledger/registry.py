"""``ModelRegistry``: the application service of the model lifecycle (commands and audit reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Mapper

from domain.errors import ModelNotFoundError, NameTakenError, VersionConflictError
from domain.model import Model, ModelStatus
from domain.name_claim import NameClaim, name_claim_id
from modelledger.mapper import MsgspecMapper

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate

T = TypeVar("T")
_ATTEMPTS = 3  # an unconditional write retries this often after losing a race


@dataclass(frozen=True)
class Saved:
    """What a command changed: the model's new version and the log position of its events."""

    model_id: UUID
    version: int
    position: int | None


class ModelRegistry(Application[UUID]):
    """Verb methods for commands, ``get_*`` for the audit trail.

    Nothing returns a live aggregate.
    """

    name = "ModelRegistry"
    snapshotting_intervals = {Model: 100}  # noqa: RUF012 - the library's class attribute

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()

    # Commands -------------------------------------------------------------------

    def register_model(
        self,
        *,
        owner_id: UUID,
        name: str,
        description: str,
        framework: str,
        endpoint_base: str,
        actor: str,
        correlation_id: str,
        model_id: UUID | None = None,
        artifact: tuple[str, int, str] | None = None,
    ) -> Saved:
        """Register a model (and its uploaded artifact); the name must be free for the owner."""
        new_id = model_id or uuid4()
        model = Model.register(
            model_id=new_id,
            owner_id=owner_id,
            name=name,
            description=description,
            framework=framework,
            endpoint_url=f"{endpoint_base.rstrip('/')}/predict/{new_id}",
            actor=actor,
            correlation_id=correlation_id,
        )
        if artifact is not None:
            filename, size_bytes, sha256 = artifact
            model.store_artifact(
                filename=filename,
                size_bytes=size_bytes,
                sha256=sha256,
                actor=actor,
                correlation_id=correlation_id,
            )

        def attempt() -> list[Any]:
            return [model, self._claim(owner_id, model.name, new_id)]

        return self._save_with_retry(attempt, retry=False)

    def update_model(
        self,
        model_id: UUID,
        *,
        owner_id: UUID,
        name: str | None = None,
        description: str | None = None,
        status: ModelStatus | None = None,
        expected_version: int | None = None,
        actor: str,
        correlation_id: str,
    ) -> Saved:
        """Change metadata and/or status; ``expected_version`` makes it conditional."""

        def attempt() -> list[Any]:
            model = self._get_owned(model_id, owner_id)
            model.check_version(expected_version)
            old_name = model.name
            changed: list[Any] = [model]
            model.update_metadata(
                name=name, description=description, actor=actor, correlation_id=correlation_id
            )
            if model.name != old_name:
                changed += self._move_claim(owner_id, old_name, model.name, model_id)
            if status is not None:
                model.change_status(status, actor=actor, correlation_id=correlation_id)
            return changed

        return self._save_with_retry(attempt, retry=expected_version is None)

    def delete_model(
        self, model_id: UUID, *, owner_id: UUID, actor: str, correlation_id: str
    ) -> Saved:
        """Soft delete: deleted status, endpoint deactivated, name released. Idempotent."""

        def attempt() -> list[Any]:
            model = self._get_owned(model_id, owner_id)
            if not model.delete(actor=actor, correlation_id=correlation_id):
                return [model]
            claim = self._get_claim(owner_id, model.name)
            if claim is not None:
                claim.release(model_id)
            return [model, claim]

        return self._save_with_retry(attempt, retry=True)

    def record_artifact_removed(self, model_id: UUID, *, actor: str, correlation_id: str) -> Saved:
        """Record that a deleted model's artifact file is gone (called by the remover)."""

        def attempt() -> list[Any]:
            model = self._get_model(model_id)
            model.record_artifact_removed(actor=actor, correlation_id=correlation_id)
            return [model]

        return self._save_with_retry(attempt, retry=True)

    # Queries (audit trail) --------------------------------------------------------

    def get_model_events(
        self, model_id: UUID, *, until_version: int | None = None
    ) -> Sequence[DomainEventProtocol[UUID]]:
        """The model's events in order (the audit trail), optionally up to a version."""
        events = list(self.events.get(model_id, lte=until_version))
        if not events or not isinstance(events[0], Model.Registered):
            raise ModelNotFoundError(str(model_id))
        return events

    def get_model_state(
        self, model_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> dict[str, Any]:
        """The model's attributes at a version or moment, as plain values."""
        events = self.get_model_events(model_id, until_version=version)
        if as_of is not None:
            # Every event of a model is a ``Model.Event``, which carries its timestamp.
            model_events = cast("Sequence[Model.Event]", events)
            events = [e for e in model_events if e.timestamp <= as_of]
            if not events:
                raise ModelNotFoundError(str(model_id))
        model: Model | None = None
        for domain_event in events:
            model = domain_event.mutate(model)  # type: ignore[attr-defined]
        if model is None:  # pragma: no cover
            raise AssertionError("unreachable: get_model_events returns at least one event")
        return model_state(model)

    # Internals ------------------------------------------------------------------

    def _save_with_retry(
        self, attempt: Callable[[], list[Any]], *, retry: bool
    ) -> Saved:
        for remaining in range(_ATTEMPTS - 1, -1, -1):
            changed = attempt()
            model = changed[0]
            try:
                recordings = self.save(*changed)
            except IntegrityError:
                if not retry or remaining == 0:
                    raise self._explain_conflict(changed) from None
                continue
            position = max((r.notification.id for r in recordings), default=None)
            return Saved(model_id=model.id, version=model.version, position=position)
        raise AssertionError("unreachable")  # pragma: no cover

    def _explain_conflict(self, changed: list[Any]) -> Exception:
        model = changed[0]
        for claim in changed[1:]:
            if isinstance(claim, NameClaim):
                current = self._get_claim(claim.owner_id, claim.name)
                if current is not None and current.holder not in (None, model.id):
                    return NameTakenError(f"name {claim.name!r} is already used by another model")
        try:
            current_model = self._get_model(model.id)
        except ModelNotFoundError:
            return NameTakenError(f"name {model.name!r} is already used by another model")
        return VersionConflictError(
            model.version - len(model.pending_events), current_model.version
        )

    def _get_model(self, model_id: UUID) -> Model:
        try:
            model: MutableOrImmutableAggregate[UUID] = self.repository.get(model_id)
        except AggregateNotFoundError:
            raise ModelNotFoundError(str(model_id)) from None
        if not isinstance(model, Model):
            raise ModelNotFoundError(str(model_id))
        return model

    def _get_owned(self, model_id: UUID, owner_id: UUID) -> Model:
        """Another owner's model is reported exactly like a missing one."""
        model = self._get_model(model_id)
        if model.owner_id != owner_id:
            raise ModelNotFoundError(str(model_id))
        return model

    def _get_claim(self, owner_id: UUID, name: str) -> NameClaim | None:
        try:
            claim: MutableOrImmutableAggregate[UUID] = self.repository.get(
                name_claim_id(owner_id, name)
            )
        except AggregateNotFoundError:
            return None
        assert isinstance(claim, NameClaim)  # noqa: S101 - narrows the type; never fails
        return claim

    def _claim(self, owner_id: UUID, name: str, model_id: UUID) -> NameClaim:
        claim = self._get_claim(owner_id, name)
        if claim is None:
            return NameClaim.claim(owner_id, name, model_id)
        claim.reclaim(model_id)
        return claim

    def _move_claim(self, owner_id: UUID, old: str, new: str, model_id: UUID) -> list[NameClaim]:
        new_claim = self._claim(owner_id, new, model_id)
        if name_claim_id(owner_id, old) == new_claim.id:
            return [new_claim]  # only the letter case changed
        old_claim = self._get_claim(owner_id, old)
        if old_claim is None:
            return [new_claim]
        old_claim.release(model_id)
        return [new_claim, old_claim]


def model_state(model: Model) -> dict[str, Any]:
    """Plain attribute values of a model aggregate."""
    return {
        "id": model.id,
        "owner_id": model.owner_id,
        "name": model.name,
        "description": model.description,
        "framework": model.framework,
        "status": model.status.value,
        "version": model.version,
        "endpoint": {"url": model.endpoint_url, "active": model.endpoint_active},
        "artifact": None if model.artifact_removed else model.artifact,
        "created_at": model.created_on,
        "updated_at": model.modified_on,
    }
