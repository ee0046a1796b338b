"""Who a bearer token speaks for: verification (HS256; RS256 with a public key or an identity
provider's JWKS), the user it names, its scopes and its usage grant, and issuing tokens.

Accepted algorithms are pinned per key: HS256 only with the shared secret, RS256 only with the
configured public key or a key of the JWKS, so ``alg=none`` and algorithm-confusion tokens are
refused. A user is the pair (issuer, subject): ``user_id_of`` derives its id from both, the same
way for every subject.
"""

from __future__ import annotations

import contextlib
import functools
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
from litestar.exceptions import NotAuthorizedException

from api.errors import ServiceUnavailableError
from services.usage import Writer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from config.settings import Settings

SCOPE_MODELS = "models"
SCOPE_USAGE_WRITE = "usage:write"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_MODELS, SCOPE_USAGE_WRITE, SCOPE_ADMIN)
REALM = 'Bearer realm="modelledger"'
SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
# Claims of a usage:write token naming whose usage it may record (README, "Service tokens").
CLAIM_OWNERS, CLAIM_MODELS, CLAIM_ALL_TENANTS = "usage_owners", "usage_models", "usage_all_tenants"
JWKS_REFRESH_COOLDOWN = 10.0  # seconds: unknown kids refetch the JWKS at most this often
JWKS_TIMEOUT = 5.0
_USER_NAMESPACE = uuid.UUID("5f0c3a52-1b8e-4f6e-9a55-6d1f0f2b7c11")
_ISSUER_NAMESPACE = uuid.uuid5(_USER_NAMESPACE, "issuers")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller; ``writer`` is what it may record usage for, ``name`` how
    the dashboard shows them (the identity provider's name; "": the subject)."""

    user_id: uuid.UUID
    subject: str
    scopes: frozenset[str]
    issuer: str
    writer: Writer
    name: str = ""


@dataclass(frozen=True)
class UsageGrant:
    """What a ``usage:write`` token may write besides its own models: the models of these
    owners (subjects of the token's own issuer), these models, or every tenant's."""

    owners: tuple[str, ...] = ()
    models: tuple[uuid.UUID, ...] = ()
    all_tenants: bool = False

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {}
        if self.owners:
            claims[CLAIM_OWNERS] = list(self.owners)
        if self.models:
            claims[CLAIM_MODELS] = [str(m) for m in self.models]
        if self.all_tenants:
            claims[CLAIM_ALL_TENANTS] = True
        return claims


def user_id_of(subject: str, issuer: str = "") -> uuid.UUID:
    """The user id of ``subject`` at ``issuer``: uuid5 of the subject in the issuer's namespace.

    One rule for every subject (a subject that looks like a UUID is not taken as an id), and
    two issuers' subjects never meet. Tokens without ``iss`` keep the original namespace, so
    the users of ``modelledger token`` keep the ids they had.
    """
    return uuid.uuid5(_namespace(issuer), subject)


@functools.lru_cache(maxsize=64)
def _namespace(issuer: str) -> uuid.UUID:
    return uuid.uuid5(_ISSUER_NAMESPACE, issuer) if issuer else _USER_NAMESPACE


def resolve_secret(settings: Settings) -> str:
    """The HS256 secret: the setting, else (SQLite) one generated once into the data directory.

    Raises ``RuntimeError`` naming ``MODELLEDGER_JWT_SECRET`` when it is missing or too short.
    """
    if settings.jwt_secret:
        return _long_enough(settings.jwt_secret)
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
    return _long_enough(path.read_text(encoding="utf-8").strip(), f" (read from {path})")


def _long_enough(secret: str, source: str = "") -> str:
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        message = (
            f"MODELLEDGER_JWT_SECRET{source} must be at least {MIN_SECRET_BYTES} bytes, not "
            f"{size}; generate one with: python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'"
        )
        raise RuntimeError(message)
    return secret


def verifier_for(settings: Settings) -> TokenVerifier:
    """The token verifier the settings describe; ``RuntimeError`` names a setting it cannot use."""
    if settings.jwt_jwks_url and settings.jwt_jwks_cache_seconds < 1:
        raise RuntimeError("MODELLEDGER_JWT_JWKS_CACHE_SECONDS must be at least 1")
    try:
        return TokenVerifier(
            resolve_secret(settings),
            settings.jwt_public_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            jwks_url=settings.jwt_jwks_url,
            jwks_cache_seconds=settings.jwt_jwks_cache_seconds,
            jwks_cooldown=JWKS_REFRESH_COOLDOWN,
        )
    except jwt.PyJWKClientError as error:
        raise RuntimeError(f"MODELLEDGER_JWT_JWKS_URL: {error}") from None


def issue_token(
    secret: str,
    subject: str,
    scopes: Iterable[str],
    ttl: timedelta = timedelta(hours=1),
    *,
    issuer: str = "",
    audience: str = "",
    grant: UsageGrant | None = None,
) -> str:
    """An HS256 token; ``issuer`` and ``audience`` should be the service's configured ones."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": subject, "scope": " ".join(scopes), "iat": now,
                              "exp": now + ttl}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if grant is not None:
        claims.update(grant.claims())
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies bearer tokens, remembering verified ones by token string until they expire.

    A signature check and claim decoding cost more than the rest of a cheap request; a client
    sends the same token with every request, so each token is verified once per process.
    Only successful verifications are cached (the bytes of a token fix its claims, and the
    issuer and audience checks are fixed per verifier), and a hit is still refused once
    ``exp`` has passed. A token verified with a JWKS key is remembered no longer than the
    JWKS document is, so a key the identity provider withdraws stops working within that time.
    """

    def __init__(
        self,
        secret: str,
        public_key: str = "",
        *,
        issuer: str = "",
        audience: str = "",
        jwks_url: str = "",
        jwks_cache_seconds: float = 300,
        jwks_cooldown: float = JWKS_REFRESH_COOLDOWN,
        cache_size: int = 10_000,
    ) -> None:
        self.keys: dict[str, Any] = {"HS256": secret}
        if public_key:
            self.keys["RS256"] = public_key
        self.issuer = issuer or None
        self.audience = audience or None
        # PyJWT's client caches the document for ``lifespan`` and refetches it for an unknown
        # kid at most once per ``cooldown_duration``: tokens with made-up kids cannot make
        # every request a fetch.
        self.jwks = jwt.PyJWKClient(
            jwks_url, cache_jwk_set=True, lifespan=jwks_cache_seconds, timeout=JWKS_TIMEOUT,
            cooldown_duration=jwks_cooldown,
        ) if jwks_url else None
        self.jwks_cache_seconds = jwks_cache_seconds
        self.cache_size = cache_size
        self._verified: dict[str, tuple[Principal, float]] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenVerifier:
        # Litestar deep-copies a router's middleware arguments when it registers the router;
        # the verifier's caches and JWKS client (holding a lock) are the process's, shared.
        return self

    @property
    def fetches_keys(self) -> bool:
        """Whether verifying a new token may wait on the network (for the JWKS)."""
        return self.jwks is not None

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired, else None."""
        cached = self._verified.get(token)
        if cached is None:
            return None
        if time.time() < cached[1]:
            return cached[0]
        self._verified.pop(token, None)
        return None

    def verify(self, token: str) -> Principal:
        principal = self.cached(token)
        if principal is not None:
            return principal
        principal, expires = self._verify(token)
        if len(self._verified) >= self.cache_size:
            self._verified.clear()  # rare: simpler than LRU, and a miss only costs a verify
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("malformed token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            raise unauthorized(f"algorithm {algorithm!r} is not accepted")
        key, remember_until = self._key_for(algorithm, header.get("kid"))
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], issuer=self.issuer, audience=self.audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.PyJWTError as error:
            raise unauthorized(f"invalid token: {error}") from None
        subject, scope, issuer = claims.get("sub"), claims.get("scope", ""), claims.get("iss", "")
        if not all(isinstance(v, str) for v in (subject, scope, issuer)) or not subject:
            raise unauthorized("invalid token: 'sub', 'scope' and 'iss' must be strings")
        scopes = frozenset(scope.split())  # no ``scope`` claim: no scope at all
        user_id = user_id_of(subject, issuer)
        writer = _writer_of(user_id, subject, issuer, _grant_of(claims), scopes)
        # PyJWT has checked that ``exp`` is a number and in the future.
        expires = min(float(claims["exp"]), remember_until)
        return Principal(user_id, subject, scopes, issuer, writer), expires

    def _key_for(self, algorithm: str, kid: object) -> tuple[Any, float]:
        """The key to check a token's signature with, and how long its verification holds."""
        if algorithm == "RS256" and self.jwks is not None and kid is not None:
            if not isinstance(kid, str):
                raise unauthorized("invalid token: 'kid' must be a string")
            try:
                jwk = self.jwks.get_signing_key(kid)
            except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as error:
                raise ServiceUnavailableError(
                    f"the identity provider's signing keys are unavailable: {error}",
                    retry_after=max(1, round(JWKS_REFRESH_COOLDOWN)),
                ) from None
            except jwt.PyJWKClientError:
                raise unauthorized(f"no signing key {kid!r} at the identity provider") from None
            return jwk, time.time() + self.jwks_cache_seconds
        key = self.keys.get(algorithm)
        if key is None:
            raise unauthorized(f"algorithm {algorithm!r} is not accepted")
        return key, float("inf")


def _grant_of(claims: dict[str, Any]) -> UsageGrant:
    """The usage grant a token's claims state; a malformed one refuses the token."""
    owners, models = claims.get(CLAIM_OWNERS, []), claims.get(CLAIM_MODELS, [])
    all_tenants = claims.get(CLAIM_ALL_TENANTS, False)
    if not isinstance(owners, list) or not all(isinstance(o, str) and o for o in owners):
        raise unauthorized(f"invalid token: {CLAIM_OWNERS!r} must be a list of subjects")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise unauthorized(f"invalid token: {CLAIM_MODELS!r} must be a list of model ids")
    try:
        model_ids = tuple(uuid.UUID(m) for m in models)
    except ValueError:
        raise unauthorized(f"invalid token: {CLAIM_MODELS!r} must be a list of model ids"
                            ) from None
    if not isinstance(all_tenants, bool):
        raise unauthorized(f"invalid token: {CLAIM_ALL_TENANTS!r} must be true or false")
    return UsageGrant(tuple(owners), model_ids, all_tenants)


def _writer_of(
    user_id: uuid.UUID, subject: str, issuer: str, grant: UsageGrant, scopes: frozenset[str]
) -> Writer:
    """A grant counts only with the ``usage:write`` scope; owners are the issuer's subjects."""
    if SCOPE_USAGE_WRITE not in scopes:
        return Writer(user_id, subject, issuer)
    return Writer(
        user_id, subject, issuer,
        owners=frozenset(user_id_of(owner, issuer) for owner in grant.owners),
        models=frozenset(grant.models),
        all_tenants=grant.all_tenants,
    )


def unauthorized(reason: str) -> NotAuthorizedException:
    # The reason may quote a token's header or claims: the header keeps printable ASCII only
    # (RFC 6750 error_description), so no crafted value can break or extend the response.
    description = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in reason)
    return NotAuthorizedException(
        detail=reason,
        headers={"WWW-Authenticate": f'{REALM}, error="invalid_token", '
                 f'error_description="{description}"'},
    )


