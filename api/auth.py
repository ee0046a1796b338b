"""Bearer JWT authentication (HS256, optionally RS256) and scope guards.

Accepted algorithms are pinned per key: HS256 only with the shared secret, RS256 only with the
configured public key, so ``alg=none`` and algorithm-confusion tokens are refused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.openapi.spec import Components, SecurityScheme

if TYPE_CHECKING:
    from collections.abc import Iterable

    from litestar.connection import ASGIConnection
    from litestar.types import ASGIApp

    from config.settings import Settings

SCOPE_MODELS = "models"
SCOPE_USAGE_WRITE = "usage:write"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_MODELS, SCOPE_USAGE_WRITE, SCOPE_ADMIN)
SECURITY_SCHEME = "BearerToken"
REALM = 'Bearer realm="modelledger"'
SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret
_USER_NAMESPACE = uuid.UUID("5f0c3a52-1b8e-4f6e-9a55-6d1f0f2b7c11")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: uuid.UUID
    subject: str
    scopes: frozenset[str]


def user_id_of(subject: str) -> uuid.UUID:
    """A ``sub`` that is a UUID is the user id; any other subject maps to a stable UUID."""
    try:
        return uuid.UUID(subject)
    except ValueError:
        return uuid.uuid5(_USER_NAMESPACE, subject)


def resolve_secret(settings: Settings) -> str:
    """The HS256 secret: the setting, else (SQLite) one generated once into the data directory."""
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.backend != "sqlite":
        raise RuntimeError("MODELLEDGER_JWT_SECRET must be set when using PostgreSQL")
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written in full, owner-only, under a temporary name, then linked into place: no
        # process ever reads a partly written secret, and the first one to link wins.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".jwt-secret-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            Path(temporary).unlink()
    return path.read_text(encoding="utf-8").strip()


def verifier_for(settings: Settings) -> TokenVerifier:
    """The token verifier the settings describe."""
    return TokenVerifier(resolve_secret(settings), settings.jwt_public_key)


def issue_token(
    secret: str, subject: str, scopes: Iterable[str], ttl: timedelta = timedelta(hours=1)
) -> str:
    now = datetime.now(UTC)
    claims = {"sub": subject, "scope": " ".join(scopes), "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies bearer tokens, remembering verified ones by token string until they expire.

    A signature check and claim decoding cost more than the rest of a cheap request; a client
    sends the same token with every request, so each token is verified once per process.
    Only successful verifications are cached (the bytes of a token fix its claims), and a hit
    is still refused once ``exp`` has passed.
    """

    def __init__(self, secret: str, public_key: str = "", *, cache_size: int = 10_000) -> None:
        self.keys: dict[str, Any] = {"HS256": secret}
        if public_key:
            self.keys["RS256"] = public_key
        self.cache_size = cache_size
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[1]:
                return cached[0]
            del self._verified[token]
        principal, expires = self._verify(token)
        if len(self._verified) >= self.cache_size:
            self._verified.clear()  # rare: simpler than LRU, and a miss only costs a verify
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise _unauthorized("malformed token") from None
        key = self.keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None or not isinstance(algorithm, str):
            raise _unauthorized(f"algorithm {algorithm!r} is not accepted")
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired") from None
        except jwt.PyJWTError as error:
            raise _unauthorized(f"invalid token: {error}") from None
        subject, scope = claims.get("sub"), claims.get("scope", SCOPE_MODELS)
        if not isinstance(subject, str) or not subject or not isinstance(scope, str):
            raise _unauthorized("invalid token: 'sub' and 'scope' must be strings")
        principal = Principal(user_id_of(subject), subject, frozenset(scope.split()))
        # PyJWT has checked that ``exp`` is a number and in the future.
        return principal, float(claims["exp"])


def _unauthorized(reason: str) -> NotAuthorizedException:
    description = reason.replace('"', "'")
    return NotAuthorizedException(
        detail=reason,
        headers={"WWW-Authenticate": f'{REALM}, error="invalid_token", '
                 f'error_description="{description}"'},
    )


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Authenticates every request of the router it is attached to."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        # OPTIONS too: every /api request needs a token (no CORS pre-flight is served).
        super().__init__(app, scopes={ScopeType.HTTP}, exclude_http_methods=[])
        self.verifier = verifier

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            raise NotAuthorizedException(
                detail="missing bearer token", headers={"WWW-Authenticate": REALM}
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        principal = self.verifier.verify(token.strip())
        needed = connection.scope["route_handler"].opt.get(SCOPES_OPT)
        if needed is not None and not principal.scopes & needed:
            raise PermissionDeniedException(
                detail=f"this route needs the scope {' or '.join(repr(s) for s in sorted(needed))}"
            )
        return AuthenticationResult(user=principal, auth=token)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):  # pragma: no cover - the middleware guarantees it
        raise NotAuthorizedException(
            detail="not authenticated", headers={"WWW-Authenticate": REALM}
        )
    return user


SCOPES_OPT = "scopes"


def requires(*any_of: str) -> dict[str, frozenset[str]]:
    """The ``opt`` of a route, controller or router admitting tokens holding at least one of the
    scopes; ``BearerAuthMiddleware`` enforces it (403) right after authenticating.

    Not a Litestar guard: Litestar copies the route handler for every guard call, about a sixth
    of a cheap read's framework time.
    """
    return {SCOPES_OPT: frozenset(any_of)}


def security_components() -> Components:
    return Components(
        security_schemes={
            SECURITY_SCHEME: SecurityScheme(
                type="http",
                scheme="bearer",
                bearer_format="JWT",
                description="HS256 (or RS256) JWT: `sub` user id, `exp`, `scope` "
                "(space-separated: models, usage:write, admin).",
            )
        }
    )
