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
    """A batch's patches: one per model (``model_view``) and one per key (``api_keys``)."""

    models: dict[UUID, RowPatch] = field(default_factory=dict)
    keys: dict[UUID, RowPatch] = field(default_factory=dict)


def fold_model_events(events: Iterable[object]) -> RegistryChanges:
    """Fold a batch of registry events into one patch per model and per key (name claims
    are ignored)."""
    changes = RegistryChanges()
    for domain_event in events:
        if isinstance(domain_event, Model.Event):
            patch = changes.models.setdefault(domain_event.originator_id, RowPatch())
            _apply(domain_event, patch)
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
    )


@_apply.register
def _(e: Model.Deleted, patch: RowPatch) -> None:
    patch.set(status=ModelStatus.DELETED.value, deleted_at=e.timestamp)


@_apply.register
def _(e: Model.EndpointDeactivated, patch: RowPatch) -> None:  # noqa: ARG001 - dispatch type
    patch.set(endpoint_active=False)


@_apply.register
def _(e: Model.ArtifactRemoved, patch: RowPatch) -> None:
    patch.set(artifact_removed_at=e.timestamp)


@_apply.register
def _(e: Model.UpstreamChanged, patch: RowPatch) -> None:
    patch.set(upstream_url=e.url or None, upstream_model=e.model or None)


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
