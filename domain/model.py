"""The ``Model`` aggregate: an uploaded ML model, its artifact and its prediction endpoint."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    InvalidStatusTransitionError,
    ModelDeletedError,
    ModelVersionNotFoundError,
    ValidationError,
    VersionConflictError,
    VersionServingError,
)
from domain.serving import FIRST_VERSION_ONLY, Split, check_split
from domain.upstream import NO_UPSTREAM, Upstream, check_upstream

NAME_MAX = 200
DESCRIPTION_MAX = 5_000
FRAMEWORK_MAX = 64
NOTES_MAX = 2_000
MAX_VERSIONS = 1_000  # versions a model may hold (each is a stored file)


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


def check_notes(notes: str) -> str:
    if len(_check_text("notes", notes)) > NOTES_MAX:
        raise ValidationError("notes", f"must be at most {NOTES_MAX} characters")
    return notes


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
    # Class defaults too, for models restored from snapshots taken before versions existed:
    # ``_files`` then derives version 1 from ``artifact``.
    versions: dict[int, dict[str, Any]] | None = None
    serving_split: list[list[int]] | None = None  # None: version 1 serves (the default)

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

    class VersionUploaded(Event):
        number: int  # 2, 3, ...: the artifact stored at registration is version 1
        filename: str
        size_bytes: int
        sha256: str
        notes: str
        actor_issuer: str = ""

    class VersionRemoved(Event):
        number: int  # its file is removed from storage (right after, or by the sweep)
        filename: str
        actor_issuer: str = ""

    class ServingChanged(Event):
        previous: list[list[int]]  # [[version, weight], ...]
        serving: list[list[int]]
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
        self.versions = {}
        self.serving_split = None

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

    def upload_version(
        self,
        *,
        filename: str,
        size_bytes: int,
        sha256: str,
        notes: str = "",
        actor: str,
        correlation_id: str,
        actor_issuer: str = "",
    ) -> int:
        """Store a new artifact as the next version (it serves only once promoted, unless
        nothing serves yet: then it is version 1); returns its number."""
        self.check_not_deleted()
        notes = check_notes(notes)
        files = self._files()
        if len(files) >= MAX_VERSIONS:
            raise ValidationError("file", f"a model holds at most {MAX_VERSIONS} versions")
        number = self.latest_version + 1
        if number == 1:  # a model registered without a file: this is its first artifact
            self.store_artifact(filename=filename, size_bytes=size_bytes, sha256=sha256,
                                actor=actor, correlation_id=correlation_id,
                                actor_issuer=actor_issuer)
            return 1
        self._version_uploaded(
            number=number, filename=filename, size_bytes=size_bytes, sha256=sha256, notes=notes,
            actor=actor, correlation_id=correlation_id, actor_issuer=actor_issuer,
        )
        return number

    def remove_version(
        self, number: int, *, actor: str, correlation_id: str, actor_issuer: str = ""
    ) -> str | None:
        """Withdraw a version that serves no traffic; returns its file name to remove (None:
        it was removed before)."""
        self.check_not_deleted()
        found = self._files().get(number)
        if found is None:
            raise ModelVersionNotFoundError(f"model {self.id} has no version {number}")
        if found["removed"]:
            return None
        if number in self.serving_versions:
            raise VersionServingError(
                f"version {number} serves traffic: set serving to other versions first"
            )
        self._version_removed(number=number, filename=found["filename"], actor=actor,
                              correlation_id=correlation_id, actor_issuer=actor_issuer)
        return str(found["filename"])

    def set_serving(
        self, entries: list[tuple[int, int]], *, actor: str, correlation_id: str,
        actor_issuer: str = "",
    ) -> bool:
        """Serve one version or a weighted split of versions whose files exist; returns
        whether anything changed."""
        self.check_not_deleted()
        available = [n for n, f in self._files().items() if not f["removed"]]
        split = check_split(entries, available)
        if split == self.serving:
            return False
        self._serving_changed(
            previous=[list(e) for e in self.serving], serving=[list(e) for e in split],
            actor=actor, correlation_id=correlation_id, actor_issuer=actor_issuer,
        )
        return True

    def record_version_removed(
        self, number: int, *, actor: str, correlation_id: str, actor_issuer: str = ""
    ) -> None:
        """Record that a deleted model's version file is gone from storage."""
        found = self._files().get(number)
        if found is None or found["removed"]:
            return
        self._version_removed(number=number, filename=found["filename"], actor=actor,
                              correlation_id=correlation_id, actor_issuer=actor_issuer)

    @property
    def latest_version(self) -> int:
        return max(self._files(), default=0)

    @property
    def serving(self) -> Split:
        """The split serving the endpoint; nothing before a first version exists."""
        if self.serving_split is not None:
            return tuple((v, w) for v, w in self.serving_split)
        return FIRST_VERSION_ONLY if 1 in self._files() else ()

    @property
    def serving_versions(self) -> set[int]:
        return {version for version, _ in self.serving}

    def version_files(self) -> dict[int, dict[str, Any]]:
        """Each version's file facts (filename, size_bytes, sha256, notes, removed)."""
        return {n: dict(f) for n, f in self._files().items()}

    def _files(self) -> dict[int, dict[str, Any]]:
        if self.versions is None:  # restored from a snapshot taken before versions
            self.versions = {}
            if self.artifact is not None:
                self.versions[1] = {**self.artifact, "notes": "",
                                    "removed": self.artifact_removed}
        return self.versions

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
        self._files()[1] = {**self.artifact, "notes": "", "removed": False}

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
        if 1 in self._files():
            self._files()[1]["removed"] = True

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

    @event(VersionUploaded)
    def _version_uploaded(  # noqa: PLR0917 - @event makes the parameters the event's attributes
        self,
        number: int,
        filename: str,
        size_bytes: int,
        sha256: str,
        notes: str,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.artifact = {"filename": filename, "size_bytes": size_bytes, "sha256": sha256}
        self.artifact_removed = False
        self._files()[number] = {**self.artifact, "notes": notes, "removed": False}

    @event(VersionRemoved)
    def _version_removed(
        self,
        number: int,
        filename: str,  # noqa: ARG002 - event attribute
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self._files()[number]["removed"] = True
        if number == self.latest_version:
            self.artifact_removed = True

    @event(ServingChanged)
    def _serving_changed(
        self,
        previous: list[list[int]],  # noqa: ARG002 - event attribute
        serving: list[list[int]],
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.serving_split = [list(e) for e in serving]
