"""Bearer authentication of every /api request, the scopes a route admits, and the OpenAPI
security scheme (tokens themselves: ``api.tokens``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.concurrency import sync_to_thread
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.openapi.spec import Components, SecurityScheme

from api.tokens import (
    CLAIM_ALL_TENANTS,
    CLAIM_MODELS,
    CLAIM_OWNERS,
    REALM,
    Principal,
    TokenVerifier,
    unauthorized,
)

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.types import ASGIApp

SECURITY_SCHEME = "BearerToken"


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
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        token = token.strip()
        principal = self.verifier.cached(token)
        if principal is None and self.verifier.fetches_keys:
            # A JWKS fetch must not hold the event loop (other verifications are CPU only).
            principal = await sync_to_thread(self.verifier.verify, token)
        elif principal is None:
            principal = self.verifier.verify(token)
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
                description="HS256 (or RS256) JWT: `sub` (the user at `iss`, when given), `exp`, "
                "`scope` (space-separated: models, usage:write, admin; none: no access). A "
                "usage:write token records usage for its own models and those it names: "
                f"`{CLAIM_OWNERS}` (subjects of its issuer), `{CLAIM_MODELS}` (model ids), or "
                f"`{CLAIM_ALL_TENANTS}: true`.",
            )
        }
    )
