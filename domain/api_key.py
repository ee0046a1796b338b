"""``ApiKey``: a key an application calls a user's endpoints with, in the registry log.

The key's text is ``mlk_<key id as 32 hex>_<secret>``; only the secret's sha256 is stored.
A fast hash is right here: the secret is 256 random bits, so there is no dictionary to
search and nothing a slow password hash would protect better.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from domain.errors import ModelLedgerError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

KEY_PREFIX = "mlk_"
NAME_MAX = 200
MODELS_MAX = 1_000  # model ids one key may name
LIVE_KEYS_MAX = 100  # keys an owner may hold at once (revoked ones do not count)
_SECRET_BYTES = 32  # 256 bits; token_urlsafe writes them as 43 characters
_KEY_TEXT = re.compile(r"mlk_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


class KeyNotFoundError(ModelLedgerError, LookupError):
    """No such key (another user's key is reported the same)."""


class KeyLimitError(ModelLedgerError):
    """The owner already holds as many live keys as allowed."""


def check_key_name(name: str) -> str:
    """The name stripped of surrounding white space, or raise."""
    if "\x00" in name:  # PostgreSQL text cannot hold NUL
        raise ValidationError("name", "must not contain the NUL character")
    stripped = name.strip()
    if not 1 <= len(stripped) <= NAME_MAX:
        raise ValidationError("name", f"must be 1 to {NAME_MAX} characters")
    return stripped


def check_key_models(models: Sequence[UUID] | None) -> list[str] | None:
    """The model ids a key covers, each once in the order given (None: all the owner's)."""
    if models is None:
        return None
    distinct = [str(m) for m in dict.fromkeys(models)]
    if not 1 <= len(distinct) <= MODELS_MAX:
        raise ValidationError(
            "models", f"must name 1 to {MODELS_MAX} models, or be null for all of them"
        )
    return distinct


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_text(key_id: UUID, secret: str) -> str:
    return f"{KEY_PREFIX}{key_id.hex}_{secret}"


def parse_key(text: str) -> tuple[UUID, str] | None:
    """(key id, secret) of a key's text, or None when it is not shaped like one."""
    found = _KEY_TEXT.fullmatch(text)
    return None if found is None else (UUID(hex=found.group(1)), found.group(2))


def secret_matches(secret: str, secret_sha256: str) -> bool:
    """Whether ``secret`` hashes to the stored hash (compared in constant time)."""
    return hmac.compare_digest(hash_secret(secret), secret_sha256)


class ApiKey(Aggregate):
    """A user's key. Every event names who acted and the request's correlation id."""

    class Event(Aggregate.Event):
        actor: str
        correlation_id: str

    class Created(Event, Aggregate.Created):
        owner_id: UUID
        name: str
        models: list[str] | None  # model ids; None: every model of the owner, now and later
        secret_sha256: str
        actor_issuer: str = ""

    class Revoked(Event):
        actor_issuer: str = ""

    @event(Created)
    def __init__(  # noqa: PLR0917 - @event makes the parameters the event's attributes
        self,
        owner_id: UUID,
        name: str,
        models: list[str] | None,
        secret_sha256: str,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.owner_id = owner_id
        self.name = name
        self.models = models
        self.secret_sha256 = secret_sha256
        self.revoked = False

    @classmethod
    def issue(
        cls,
        *,
        owner_id: UUID,
        name: str,
        models: Sequence[UUID] | None,
        actor: str,
        correlation_id: str,
        actor_issuer: str = "",
    ) -> tuple[ApiKey, str]:
        """A new key after checking its name and models, and its text (shown once)."""
        key_id, secret = uuid4(), secrets.token_urlsafe(_SECRET_BYTES)
        key = cls._create(
            cls.Created,
            id=key_id,
            owner_id=owner_id,
            name=check_key_name(name),
            models=check_key_models(models),
            secret_sha256=hash_secret(secret),
            actor=actor,
            correlation_id=correlation_id,
            actor_issuer=actor_issuer,
        )
        return key, key_text(key_id, secret)

    def revoke(self, *, actor: str, correlation_id: str, actor_issuer: str = "") -> bool:
        """Revoke the key; returns whether anything changed (revoking twice does nothing)."""
        if self.revoked:
            return False
        self._revoked(actor=actor, correlation_id=correlation_id, actor_issuer=actor_issuer)
        return True

    @event(Revoked)
    def _revoked(
        self,
        actor: str,  # noqa: ARG002 - event attribute
        correlation_id: str,  # noqa: ARG002 - event attribute
        actor_issuer: str = "",  # noqa: ARG002 - event attribute
    ) -> None:
        self.revoked = True
