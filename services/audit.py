"""The audit trail: a model's or an API key's events as (type, at, actor, changes, version)
entries."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - the API documents this struct at run time
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from domain.model import Model

if TYPE_CHECKING:
    from collections.abc import Sequence


class AuditEntry(msgspec.Struct, frozen=True):
    """One event of the trail; also an item of ``GET /api/models/{id}/history``."""

    type: str
    at: datetime
    actor: str  # the subject that acted (a user id for events stored before subjects were)
    correlation_id: str
    changes: dict[str, Any]
    version: int
    actor_issuer: str = ""  # the actor's identity provider (empty: a token without ``iss``)


_SKIPPED = {"originator_id", "originator_version", "timestamp", "originator_topic",
            "actor", "actor_issuer", "correlation_id",
            # A key's secret hash is not for anybody's eyes, an auditor's included.
            "secret_sha256"}


def describe(domain_event: Any) -> AuditEntry:
    """What one model or key event changed, in words an operator reads."""
    state = vars(domain_event)
    if isinstance(domain_event, Model.MetadataUpdated):
        changes: dict[str, Any] = {
            name: {"old": old, "new": new} for name, (old, new) in domain_event.changes.items()
        }
    elif isinstance(domain_event, Model.StatusChanged):
        changes = {"status": {"old": domain_event.old_status, "new": domain_event.new_status}}
    elif isinstance(domain_event, Model.UpstreamChanged):
        upstream = {"url": domain_event.url, "model": domain_event.model}
        changes = {"upstream": upstream if domain_event.url else None}
    else:
        changes = {
            name: str(value) if isinstance(value, UUID) else value
            for name, value in state.items()
            if name not in _SKIPPED
        }
    return AuditEntry(
        type=type(domain_event).__name__,
        at=domain_event.timestamp,
        actor=state.get("actor", ""),
        correlation_id=state.get("correlation_id", ""),
        changes=changes,
        version=domain_event.originator_version,
        actor_issuer=state.get("actor_issuer", ""),
    )


def trail(events: Sequence[Any], *, as_of: datetime | None = None) -> list[AuditEntry]:
    return [describe(e) for e in events if as_of is None or e.timestamp <= as_of]
