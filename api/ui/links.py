"""One-time sign-in links (``modelledger login-url``): a short-lived HS256 token in the URL.

The token is signed with a key derived from the JWT secret, not the secret itself, so a link
(which lands in shell history and proxy logs) is never a bearer token the API accepts; its
``jti`` is recorded when used (``SessionStore.use_link``), so it signs in once, in any process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import jwt

from api.tokens import SCOPES

if TYPE_CHECKING:
    from collections.abc import Iterable

LINK_TTL = timedelta(minutes=10)
_AUDIENCE = "modelledger-ui-login"
LINK_PATH = "/ui/login/link"


def link_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"modelledger ui sign-in link", hashlib.sha256).digest()


@dataclass(frozen=True)
class LinkClaims:
    jti: str
    subject: str
    issuer: str
    scopes: frozenset[str]
    expires_at: datetime


def issue_link_token(
    key: bytes, subject: str, scopes: Iterable[str], *, issuer: str = "",
    ttl: timedelta = LINK_TTL,
) -> str:
    now = datetime.now(UTC)
    claims = {"sub": subject, "iss": issuer, "scope": " ".join(scopes), "aud": _AUDIENCE,
              "jti": secrets.token_urlsafe(16), "iat": now, "exp": now + ttl}
    return jwt.encode(claims, key, algorithm="HS256")


def login_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{LINK_PATH}?{urlencode({'token': token})}"


def verify_link_token(key: bytes, token: str) -> LinkClaims | None:
    """The link's claims, or None when it is forged, altered, expired or malformed."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], audience=_AUDIENCE,
                            options={"require": ["exp", "sub", "jti", "aud"]})
    except jwt.PyJWTError:
        return None
    subject, issuer, scope, jti = (claims.get(k) for k in ("sub", "iss", "scope", "jti"))
    if not (isinstance(subject, str) and isinstance(issuer, str) and isinstance(scope, str)
            and isinstance(jti, str) and subject):
        return None
    scopes = frozenset(scope.split()) & frozenset(SCOPES)
    return LinkClaims(jti, subject, issuer, scopes, datetime.fromtimestamp(claims["exp"], UTC))
