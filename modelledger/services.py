"""``ModelService``: model commands with read-your-writes, for the API and the CLI.

After a command's events commit, the ``models`` projection is caught up inline (under its
lock, so it cooperates with any worker process) before the command returns: a GET that
follows sees the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.errors import ModelNotFoundError
from projections import queries

if TYPE_CHECKING:
    from uuid import UUID

    from domain.model import ModelStatus
    from modelledger.registry import ModelRegistry, Saved
    from modelledger.settings import Settings
    from projections.projector import Projector
    from projections.store import ReadStore


@dataclass(frozen=True)
class Actor:
    """Who is acting, and the request's correlation id, for the audit trail."""

    user_id: UUID
    correlation_id: str


class ModelService:
    def __init__(
        self, registry: ModelRegistry, projector: Projector, store: ReadStore, settings: Settings
    ) -> None:
        self.registry = registry
        self.projector = projector
        self.store = store
        self.settings = settings

    def _visible(self, saved: Saved, owner_id: UUID) -> queries.ModelRow:
        self.projector.catch_up("models")
        row = queries.get_model(self.store, owner_id, saved.model_id)
        if row is None:  # pragma: no cover - the catch-up above makes this impossible
            raise ModelNotFoundError(str(saved.model_id))
        return row

    def register(
        self,
        actor: Actor,
        *,
        name: str,
        description: str = "",
        framework: str = "unknown",
        artifact: tuple[str, int, str] | None = None,
        model_id: UUID | None = None,
    ) -> queries.ModelRow:
        saved = self.registry.register_model(
            owner_id=actor.user_id,
            name=name,
            description=description,
            framework=framework,
            endpoint_base=self.settings.base_url,
            actor=str(actor.user_id),
            correlation_id=actor.correlation_id,
            model_id=model_id,
            artifact=artifact,
        )
        return self._visible(saved, actor.user_id)

    def update(
        self,
        actor: Actor,
        model_id: UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        status: ModelStatus | None = None,
        expected_version: int | None = None,
    ) -> queries.ModelRow:
        saved = self.registry.update_model(
            model_id,
            owner_id=actor.user_id,
            name=name,
            description=description,
            status=status,
            expected_version=expected_version,
            actor=str(actor.user_id),
            correlation_id=actor.correlation_id,
        )
        return self._visible(saved, actor.user_id)

    def delete(self, actor: Actor, model_id: UUID) -> queries.ModelRow:
        saved = self.registry.delete_model(
            model_id,
            owner_id=actor.user_id,
            actor=str(actor.user_id),
            correlation_id=actor.correlation_id,
        )
        return self._visible(saved, actor.user_id)

    def get(self, owner_id: UUID, model_id: UUID) -> queries.ModelRow:
        row = queries.get_model(self.store, owner_id, model_id)
        if row is None:
            raise ModelNotFoundError(str(model_id))
        return row
