"""The ``models`` projection's fold: registry events become row patches of ``model_view``
(model events) and of ``api_keys`` (key events).

Pure: no database. The store applies the patches of a batch with the tracking position in
one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import TYPE_CHECKING, Any

import msgspec

from domain.api_key import ApiKey
from domain.model import Model, ModelStatus

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID


@dataclass
class RowPatch:
    """A new row (``insert``) or column updates of an existing one."""

    insert: dict[str, Any] | None = None
    updates: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> None:
        (self.insert if self.insert is not None else self.updates).update(values)


@dataclass
class RegistryChanges:
    """A batch's patches: one per model (``model_view``), per key (``api_keys``) and per
    model version (``model_versions``); ``removed_latest``: (model, version) whose file was
    removed, which clears the model's artifact when that version is still its latest."""

    models: dict[UUID, RowPatch] = field(default_factory=dict)
    keys: dict[UUID, RowPatch] = field(default_factory=dict)
    versions: dict[tuple[UUID, int], RowPatch] = field(default_factory=dict)
    removed_latest: list[tuple[UUID, int, Any]] = field(default_factory=list)


def fold_model_events(events: Iterable[object]) -> RegistryChanges:
    """Fold a batch of registry events into one patch per model and per key (name claims
    are ignored)."""
    changes = RegistryChanges()
    for domain_event in events:
        if isinstance(domain_event, Model.Event):
            patch = changes.models.setdefault(domain_event.originator_id, RowPatch())
            _apply(domain_event, patch)
            _apply_version(domain_event, changes)
            patch.set(version=domain_event.originator_version, updated_at=domain_event.timestamp)
        elif isinstance(domain_event, ApiKey.Event):
            patch = changes.keys.setdefault(domain_event.originator_id, RowPatch())
            _apply_key(domain_event, patch)
            patch.set(version=domain_event.originator_version)
    return changes


@singledispatch
def _apply(domain_event: Model.Event, patch: RowPatch) -> None:
    """Events that change nothing the read model shows."""


@_apply.register
def _(e: Model.Registered, patch: RowPatch) -> None:
    patch.insert = {
        "id": e.originator_id,
        "owner_id": e.owner_id,
        "name": e.name,
        "description": e.description,
        "framework": e.framework,
        "status": ModelStatus.ACTIVE.value,
        "version": e.originator_version,
        "endpoint_url": e.endpoint_url,
        "endpoint_active": True,
        "artifact_filename": None,
        "artifact_size_bytes": None,
        "artifact_sha256": None,
        "artifact_removed_at": None,
        "created_at": e.timestamp,
        "updated_at": e.timestamp,
        "deleted_at": None,
        "upstream_url": None,
        "upstream_model": None,
        "serving": None,
        "latest_version": 0,
    }


@_apply.register
def _(e: Model.MetadataUpdated, patch: RowPatch) -> None:
    patch.set(**{name: new for name, (_, new) in e.changes.items()})


@_apply.register
def _(e: Model.StatusChanged, patch: RowPatch) -> None:
    patch.set(status=e.new_status, endpoint_active=e.new_status == ModelStatus.ACTIVE.value)


@_apply.register
def _(e: Model.ArtifactStored, patch: RowPatch) -> None:
    patch.set(
        artifact_filename=e.filename,
        artifact_size_bytes=e.size_bytes,
        artifact_sha256=e.sha256,
        artifact_removed_at=None,
        latest_version=1,
    )


@_apply.register
def _(e: Model.Deleted, patch: RowPatch) -> None:
    patch.set(status=ModelStatus.DELETED.value, deleted_at=e.timestamp)


@_apply.register
def _(e: Model.EndpointDeactivated, patch: RowPatch) -> None:  # noqa: ARG001 - dispatch type
    patch.set(endpoint_active=False)


# ArtifactRemoved and VersionRemoved clear the artifact only when they remove the latest
# version, which the fold cannot see: ``RegistryChanges.removed_latest``.


@_apply.register
def _(e: Model.UpstreamChanged, patch: RowPatch) -> None:
    patch.set(upstream_url=e.url or None, upstream_model=e.model or None)


@_apply.register
def _(e: Model.VersionUploaded, patch: RowPatch) -> None:
    patch.set(
        artifact_filename=e.filename,
        artifact_size_bytes=e.size_bytes,
        artifact_sha256=e.sha256,
        artifact_removed_at=None,
        latest_version=e.number,
    )


@_apply.register
def _(e: Model.ServingChanged, patch: RowPatch) -> None:
    patch.set(serving=msgspec.json.encode(e.serving).decode())


@singledispatch
def _apply_version(domain_event: Model.Event, changes: RegistryChanges) -> None:
    """Model events that change no version row."""


@_apply_version.register
def _(e: Model.ArtifactStored, changes: RegistryChanges) -> None:
    _version_stored(changes, e, 1, e.filename, e.size_bytes, e.sha256, "")


@_apply_version.register
def _(e: Model.VersionUploaded, changes: RegistryChanges) -> None:
    _version_stored(changes, e, e.number, e.filename, e.size_bytes, e.sha256, e.notes)


def _version_stored(  # noqa: PLR0917 - a version row's columns
    changes: RegistryChanges, e: Model.Event, number: int, filename: str, size_bytes: int,
    sha256: str, notes: str,
) -> None:
    changes.versions[e.originator_id, number] = RowPatch(insert={
        "model_id": e.originator_id, "number": number, "filename": filename,
        "size_bytes": size_bytes, "sha256": sha256, "notes": notes, "created_at": e.timestamp,
        "created_by": e.actor, "removed_at": None,
    })


@_apply_version.register
def _(e: Model.ArtifactRemoved, changes: RegistryChanges) -> None:
    _version_removed(changes, e, 1)


@_apply_version.register
def _(e: Model.VersionRemoved, changes: RegistryChanges) -> None:
    _version_removed(changes, e, e.number)


def _version_removed(changes: RegistryChanges, e: Model.Event, number: int) -> None:
    changes.versions.setdefault((e.originator_id, number), RowPatch()).set(removed_at=e.timestamp)
    changes.removed_latest.append((e.originator_id, number, e.timestamp))


@singledispatch
def _apply_key(domain_event: ApiKey.Event, patch: RowPatch) -> None:
    """Key events that change nothing the read model shows."""


@_apply_key.register
def _(e: ApiKey.Created, patch: RowPatch) -> None:
    patch.insert = {
        "id": e.originator_id,
        "owner_id": e.owner_id,
        "name": e.name,
        "models": None if e.models is None else msgspec.json.encode(e.models).decode(),
        "secret_sha256": e.secret_sha256,
        "created_at": e.timestamp,
        "revoked_at": None,
        "version": e.originator_version,
    }


@_apply_key.register
def _(e: ApiKey.Revoked, patch: RowPatch) -> None:
    patch.set(revoked_at=e.timestamp)
