"""``ApiKeyService``: the registry context's way in for API keys.

Keys are events in the registry log (``domain.api_key``); commands catch the ``models``
projection (which holds ``api_keys``) up inline before returning, so a list that follows
sees the change and a revoked key stops authenticating in every process at once. A key is
checked against the projection table alone: one primary-key read, no aggregate load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.api_key import (
    LIVE_KEYS_MAX,
    ApiKey,
    KeyLimitError,
    KeyNotFoundError,
    check_key_models,
    check_key_name,
    parse_key,
    secret_matches,
)
from domain.errors import ModelNotFoundError
from domain.model import ModelStatus
from projections.models import queries
from projections.models.queries import KeyView

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from eventsourcing.domain import DomainEventProtocol

    from eventstore.applications import RegistryLog
    from projections.projector import Projector
    from projections.store.base import ReadStore
    from services.models import Who

__all__ = ["ApiKeyService", "KeyGrant", "KeyView"]


@dataclass(frozen=True)
class KeyGrant:
    """What an authenticated key may call: its owner's models, or only those it names."""

    key_id: UUID
    owner_id: UUID
    models: frozenset[UUID] | None  # None: every model of the owner, present and future

    def covers(self, model_id: UUID, owner_id: UUID) -> bool:
        return owner_id == self.owner_id and (self.models is None or model_id in self.models)


def grant_of(key_id: UUID, secret: str, row: queries.ApiKeyRow | None) -> KeyGrant | None:
    """The grant of key ``key_id`` presented with ``secret``, given its row (read fresh or, by
    the endpoint, from its cache): None for an unknown or revoked key or a wrong secret."""
    if row is None or row.revoked or not secret_matches(secret, row.secret_sha256):
        return None
    return KeyGrant(key_id, row.owner_id, row.models)


class ApiKeyService:
    """Verb methods for commands, ``get_*`` for queries; nothing returns a live aggregate."""

    def __init__(self, log: RegistryLog, projector: Projector, store: ReadStore) -> None:
        self.log = log
        self.projector = projector
        self.store = store

    # Commands -------------------------------------------------------------------------

    def create(
        self, owner_id: UUID, name: str, models: Sequence[UUID] | None, who: Who
    ) -> tuple[KeyView, str]:
        """A new key of the owner's and its text, which is shown this once.

        Every model named must be the owner's and not deleted (else ``ModelNotFoundError``,
        as for a missing one); at most ``LIVE_KEYS_MAX`` live keys per owner (``KeyLimitError``;
        counted from the projection, so concurrent creations may pass it by a few).
        """
        check_key_name(name)  # before any read: a bad name is the first thing reported
        self._check_models(owner_id, check_key_models(models))
        if queries.live_key_count(self.store, owner_id) >= LIVE_KEYS_MAX:
            raise KeyLimitError(
                f"an owner may hold at most {LIVE_KEYS_MAX} keys; revoke one to create another"
            )
        key, text = ApiKey.issue(owner_id=owner_id, name=name, models=models, **who)
        self.log.save(key)
        return self._visible(owner_id, key.id), text

    def revoke(self, owner_id: UUID, key_id: UUID, who: Who) -> None:
        """Revoke the owner's key (again: nothing changes); another owner's is not found."""
        key = self._get_owned(owner_id, key_id)
        if key.revoke(**who):
            self.log.save(key)
            self.projector.catch_up("models")

    # Queries --------------------------------------------------------------------------

    def get_keys(self, owner_id: UUID) -> list[KeyView]:
        """The owner's live keys, oldest first, with their requests and latest use."""
        return queries.live_keys(self.store, owner_id)

    def authenticate(self, key_text: str) -> KeyGrant | None:
        """The grant of a live key whose secret matches, else None (unknown, revoked, wrong
        secret or not shaped like a key)."""
        parsed = parse_key(key_text)
        if parsed is None:
            return None
        key_id, secret = parsed
        return grant_of(key_id, secret, queries.api_key_row(self.store, key_id))

    def get_key_events(
        self, key_id: UUID, *, until_version: int | None = None
    ) -> list[DomainEventProtocol[UUID]]:
        """The key's events in order (the operator's audit trail), optionally up to a version."""
        events = list(self.log.events.get(key_id, lte=until_version))
        if not events or not isinstance(events[0], ApiKey.Created):
            raise KeyNotFoundError(str(key_id))
        return events

    def get_key_state(
        self, key_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> dict[str, Any]:
        """The key as it was at a version or moment, as plain values (never its hash)."""
        key: ApiKey | None = None
        revoked_at = None
        events = cast("list[ApiKey.Event]", self.get_key_events(key_id, until_version=version))
        for domain_event in events:
            if as_of is not None and domain_event.timestamp > as_of:
                break
            key = domain_event.mutate(key)
            if isinstance(domain_event, ApiKey.Revoked):
                revoked_at = domain_event.timestamp
        if key is None:
            raise KeyNotFoundError(str(key_id))
        return {
            "id": key.id, "owner_id": key.owner_id, "name": key.name, "models": key.models,
            "version": key.version, "created_at": key.created_on, "revoked_at": revoked_at,
        }

    # Internals ------------------------------------------------------------------------

    def _check_models(self, owner_id: UUID, model_ids: list[str] | None) -> None:
        if model_ids is None:
            return
        ids = [UUID(m) for m in model_ids]
        found = queries.model_lookup(self.store, ids)
        for model_id in ids:
            owner, status, _ = found.get(model_id, (None, None, 0))
            if owner != owner_id or status == ModelStatus.DELETED.value:
                raise ModelNotFoundError(str(model_id))

    def _visible(self, owner_id: UUID, key_id: UUID) -> KeyView:
        self.projector.catch_up("models")
        view = queries.get_key(self.store, owner_id, key_id)
        if view is None:  # pragma: no cover - the catch-up above makes this impossible
            raise KeyNotFoundError(str(key_id))
        return view

    def _get_owned(self, owner_id: UUID, key_id: UUID) -> ApiKey:
        """Another owner's key is reported exactly like a missing one."""
        try:
            key: Any = self.log.repository.get(key_id)
        except AggregateNotFoundError:
            raise KeyNotFoundError(str(key_id)) from None
        if not isinstance(key, ApiKey) or key.owner_id != owner_id:
            raise KeyNotFoundError(str(key_id))
        return key
