"""The ``models`` projection's fold: model events become row patches of ``model_view``.

Pure: no database. The store applies the patches of a batch with the tracking position in
one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import TYPE_CHECKING, Any

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


def fold_model_events(events: Iterable[object]) -> dict[UUID, RowPatch]:
    """Fold a batch of registry events into one patch per model (other events are ignored)."""
    patches: dict[UUID, RowPatch] = {}
    for domain_event in events:
        if isinstance(domain_event, Model.Event):
            patch = patches.setdefault(domain_event.originator_id, RowPatch())
            _apply(domain_event, patch)
            patch.set(version=domain_event.originator_version, updated_at=domain_event.timestamp)
    return patches


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
