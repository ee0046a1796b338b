"""The ``Model`` aggregate: an uploaded ML model, its artifact and its prediction endpoint."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    InvalidStatusTransitionError,
    ModelDeletedError,
    ValidationError,
    VersionConflictError,
)
from domain.upstream import NO_UPSTREAM, Upstream, check_upstream

NAME_MAX = 200
DESCRIPTION_MAX = 5_000
FRAMEWORK_MAX = 64


class ModelStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    DELETED = "deleted"


# Status changes a user may ask for; deletion has its own command.
ALLOWED_TRANSITIONS = {
    (ModelStatus.ACTIVE, ModelStatus.INACTIVE),
    (ModelStatus.INACTIVE, ModelStatus.ACTIVE),
}


def check_name(name: str) -> str:
    """Return the name stripped of surrounding white space, or raise."""
    stripped = _check_text("name", name).strip()
    if not 1 <= len(stripped) <= NAME_MAX:
        raise ValidationError("name", f"must be 1 to {NAME_MAX} characters")
    return stripped


def check_description(description: str) -> str:
    if len(_check_text("description", description)) > DESCRIPTION_MAX:
        raise ValidationError("description", f"must be at most {DESCRIPTION_MAX} characters")
    return description


def check_framework(framework: str) -> str:
    stripped = _check_text("framework", framework).strip()
    if not 1 <= len(stripped) <= FRAMEWORK_MAX:
        raise ValidationError("framework", f"must be 1 to {FRAMEWORK_MAX} characters")
    return stripped


def _check_text(field: str, text: str) -> str:
    # PostgreSQL text cannot hold NUL: an event carrying one would stop the models projection.
    if "\x00" in text:
        raise ValidationError(field, "must not contain the NUL character")
    return text


class Model(Aggregate):
    """A user's model. Every event names who acted and the request's correlation id.

    ``actor`` is the caller's subject as its identity provider knows it (before the
    identity change: the user id as text), ``actor_issuer`` that provider (empty for tokens
    without ``iss`` and for events stored before the field existed). The issuer is the last
    field of every event, with a default, because the stored layout only grows at the end.
    """

    # Attributes a snapshot stores as plain values, with the types to restore (eventstore.mapper).
    SNAPSHOT_TYPES = (("owner_id", UUID), ("status", ModelStatus))
    # A class default, so that a model restored from a snapshot taken before upstreams
    # existed (its state lacks the attribute) has none.
    upstream: dict[str, str] | None = None

    class Event(Aggregate.Event):
        actor: str
        correlation_id: str

    class Registered(Event, Aggregate.Created):
        owner_id: UUID
        name: str
        description: str
        framework: str
        endpoint_url: str
        actor_issuer: str = ""

    class MetadataUpdated(Event):
        changes: dict[str, tuple[str, str]]  # field -> (old, new)
        actor_issuer: str = ""

    class StatusChanged(Event):
        old_status: str
        new_status: str
        actor_issuer: str = ""

    class ArtifactStored(Event):
        filename: str
        size_bytes: int
        sha256: str
        actor_issuer: str = ""

    class Deleted(Event):
        actor_issuer: str = ""

    class EndpointDeactivated(Event):
        actor_issuer: str = ""

    class ArtifactRemoved(Event):
        filename: str
        actor_issuer: str = ""

    class UpstreamChanged(Event):
        url: str  # empty, with ``model``: the upstream was removed
        model: str
        actor_issuer: str = ""

    @event(Registered)
    def __init__(  # noqa: PLR0917 - @event makes the parameters the event's attributes
        self,
        owner_id: UUID,
        name: str,
        description: str,
        framework: str,
        endpoint_url: str,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.owner_id = owner_id
        self.name = name
        self.description = description
        self.framework = framework
        self.status = ModelStatus.ACTIVE
        self.endpoint_url = endpoint_url
        self.endpoint_active = True
        self.artifact: dict[str, Any] | None = None
        self.artifact_removed = False

    @classmethod
    def register(
        cls,
        *,
        model_id: UUID,
        owner_id: UUID,
        name: str,
        description: str,
        framework: str,
        endpoint_url: str,
        actor: str,
        correlation_id: str,
        actor_issuer: str = "",
        upstream: Upstream = NO_UPSTREAM,
    ) -> Model:
        """Register a new model after checking its metadata (and its upstream, if any)."""
        model = cls._create(
            cls.Registered,
            id=model_id,
            owner_id=owner_id,
            name=check_name(name),
            description=check_description(description),
            framework=check_framework(framework),
            endpoint_url=endpoint_url,
            actor=actor,
            correlation_id=correlation_id,
            actor_issuer=actor_issuer,
        )
        if upstream:
            model.set_upstream(
                upstream, actor=actor, correlation_id=correlation_id, actor_issuer=actor_issuer
            )
        return model

    # Guards -----------------------------------------------------------------

    def check_not_deleted(self) -> None:
        if self.status is ModelStatus.DELETED:
            raise ModelDeletedError(f"model {self.id} is deleted")

    def check_version(self, expected_version: int | None) -> None:
        if expected_version is not None and expected_version != self.version:
            raise VersionConflictError(expected_version, self.version)

    # Commands ---------------------------------------------------------------

    def update_metadata(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        actor: str,
        correlation_id: str,
        actor_issuer: str = "",
    ) -> dict[str, tuple[str, str]]:
        """Change name and/or description; returns the changes (empty when nothing changed)."""
        self.check_not_deleted()
        changes: dict[str, tuple[str, str]] = {}
        if name is not None and (new_name := check_name(name)) != self.name:
            changes["name"] = (self.name, new_name)
        if description is not None:
            new_description = check_description(description)
            if new_description != self.description:
                changes["description"] = (self.description, new_description)
        if changes:
            self._metadata_updated(
                changes=changes, actor=actor, correlation_id=correlation_id,
                actor_issuer=actor_issuer,
            )
        return changes

    def change_status(
        self, new_status: ModelStatus, *, actor: str, correlation_id: str, actor_issuer: str = ""
    ) -> bool:
        """Activate or deactivate the model; returns whether anything changed."""
        self.check_not_deleted()
        if new_status == self.status:
            return False
        if (self.status, new_status) not in ALLOWED_TRANSITIONS:
            raise InvalidStatusTransitionError(
                f"cannot change status from {self.status} to {new_status}"
            )
        self._status_changed(
            old_status=self.status.value,
            new_status=new_status.value,
            actor=actor,
            correlation_id=correlation_id,
            actor_issuer=actor_issuer,
        )
        return True

    def store_artifact(
        self,
        *,
        filename: str,
        size_bytes: int,
        sha256: str,
        actor: str,
        correlation_id: str,
        actor_issuer: str = "",
    ) -> None:
        self.check_not_deleted()
        self._artifact_stored(
            filename=filename,
            size_bytes=size_bytes,
            sha256=sha256,
            actor=actor,
            correlation_id=correlation_id,
            actor_issuer=actor_issuer,
        )

    def set_upstream(
        self, upstream: Upstream, *, actor: str, correlation_id: str, actor_issuer: str = ""
    ) -> bool:
        """Name the upstream server to forward to (``NO_UPSTREAM``: none); returns whether
        anything changed."""
        self.check_not_deleted()
        new = check_upstream(upstream.url, upstream.model) if upstream else NO_UPSTREAM
        current = Upstream(**self.upstream) if self.upstream else NO_UPSTREAM
        if new == current:
            return False
        self._upstream_changed(
            url=new.url, model=new.model, actor=actor, correlation_id=correlation_id,
            actor_issuer=actor_issuer,
        )
        return True

    def delete(self, *, actor: str, correlation_id: str, actor_issuer: str = "") -> bool:
        """Soft delete: status ``deleted`` and the endpoint deactivated. Idempotent."""
        if self.status is ModelStatus.DELETED:
            return False
        who = {"actor": actor, "correlation_id": correlation_id, "actor_issuer": actor_issuer}
        self._deleted(**who)
        if self.endpoint_active:
            self._endpoint_deactivated(**who)
        return True

    def record_artifact_removed(
        self, *, actor: str, correlation_id: str, actor_issuer: str = ""
    ) -> None:
        """Record that the artifact file of a deleted model is gone from storage."""
        if self.artifact is None or self.artifact_removed:
            return
        self._artifact_removed(
            filename=str(self.artifact["filename"]), actor=actor, correlation_id=correlation_id,
            actor_issuer=actor_issuer,
        )

    @property
    def artifact_pending_removal(self) -> bool:
        return (
            self.status is ModelStatus.DELETED
            and self.artifact is not None
            and not self.artifact_removed
        )

    # Event appliers -----------------------------------------------------------
    # @event makes an applier's parameters the attributes of its event, so parameters that
    # change no state (who acted, the correlation id) are still needed.

    @event(MetadataUpdated)
    def _metadata_updated(
        self,
        changes: dict[str, tuple[str, str]],
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        for field, (_, new) in changes.items():
            setattr(self, field, new)

    @event(StatusChanged)
    def _status_changed(
        self,
        old_status: str,  # noqa: ARG002 - event attribute
        new_status: str,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.status = ModelStatus(new_status)
        self.endpoint_active = self.status is ModelStatus.ACTIVE

    @event(ArtifactStored)
    def _artifact_stored(  # noqa: PLR0917 - @event makes the parameters the event's attributes
        self,
        filename: str,
        size_bytes: int,
        sha256: str,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.artifact = {"filename": filename, "size_bytes": size_bytes, "sha256": sha256}
        self.artifact_removed = False

    @event(Deleted)
    def _deleted(
        self,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.status = ModelStatus.DELETED

    @event(EndpointDeactivated)
    def _endpoint_deactivated(
        self,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.endpoint_active = False

    @event(ArtifactRemoved)
    def _artifact_removed(
        self,
        filename: str,  # noqa: ARG002 - event attribute
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.artifact_removed = True

    @event(UpstreamChanged)
    def _upstream_changed(
        self,
        url: str,
        model: str,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.upstream = {"url": url, "model": model} if url else None
