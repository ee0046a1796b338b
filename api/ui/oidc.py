"""Dashboard sign-in through an OpenID Connect provider: the authorisation-code flow with PKCE.

``GET /ui/oidc/login`` sends the browser to the provider with a fresh ``state``, ``nonce`` and
S256 code challenge, and keeps them for the callback in a signed, short-lived HttpOnly cookie:
no server-side state, so any process of ``serve --workers N`` can take the callback.
``GET /ui/oidc/callback`` checks the state, exchanges the code with the verifier, verifies the
ID token (signature by a key of the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``) and
starts a dashboard session for the user the API gives a token of the same ``sub`` and ``iss``.
Signatures and claims are checked by PyJWT, as for the API's tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx
import jwt
from litestar import Request, Response, Router, get
from litestar.datastructures import Cookie
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from api.tokens import SCOPE_MODELS, resolve_secret
from api.ui.pages_auth import PUBLIC
from api.ui.sessions import begin_session, safe_next
from config.settings import check_provider_url

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

PATH: Final = "/ui/oidc"
LOGIN_PATH: Final = f"{PATH}/login"
CALLBACK_PATH: Final = f"{PATH}/callback"
LOGIN_COOKIE: Final = "modelledger_oidc"
LOGIN_SECONDS: Final = 600  # the time a person has at the provider's sign-in page
DASHBOARD_SCOPES: Final = frozenset({SCOPE_MODELS})
# Asymmetric algorithms only: an HS256 ID token would be signed with the client secret.
ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
HTTP_TIMEOUT: Final = 5.0
MAX_DOCUMENT_BYTES: Final = 256 * 1024  # discovery, JWKS and token answers
DISCOVERY_SECONDS: Final = 3600.0
JWKS_SECONDS: Final = 300.0
JWKS_COOLDOWN: Final = 10.0  # an unknown kid refetches the JWKS at most this often
CLOCK_SKEW: Final = 60  # seconds of leeway on exp and iat
MAX_PARAM: Final = 4096  # longest code or state taken from the callback's query
MAX_NAME: Final = 80  # a display name longer than this is cut (it sits in the page header)
NAME_CLAIMS: Final = ("name", "preferred_username", "email")  # OIDC Core 5.1, best first
_COOKIE_AUDIENCE: Final = "modelledger:oidc-login"
# Every answer of these routes sets or clears a cookie: none may be kept by a cache.
NO_STORE: Final = {"Cache-Control": "no-store"}


class SignInError(Exception):
    """A sign-in that cannot go on; ``message`` is shown to the person, never a secret."""

    def __init__(self, status_code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.reason = reason or message  # for the log: may name the provider's error code


def _provider_failed(reason: str) -> SignInError:
    # The provider, not the person, is at fault: 502 says so to monitoring.
    return SignInError(502, "The identity provider could not be reached or gave an answer "
                       "this service cannot use. Try again later.", reason)


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in; ``name`` is only shown (``subject`` and ``issuer``
    are who it is)."""

    subject: str
    issuer: str
    name: str = ""


def display_name(claims: dict[str, Any]) -> str:
    """The first of the ID token's name claims that is text, without control characters and
    cut to ``MAX_NAME``; "" when it has none (the dashboard then shows the subject)."""
    for claim in NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str):
            text = " ".join("".join(c for c in value if c.isprintable()).split())[:MAX_NAME]
            if text:
                return text
    return ""


@dataclass(frozen=True)
class PendingLogin:
    """What the callback must match: kept in the login cookie."""

    state: str
    nonce: str
    verifier: str
    next_path: str


@dataclass(frozen=True)
class Provider:
    """The endpoints of the provider's discovery document."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    basic_auth: bool  # client_secret_basic (the default) rather than client_secret_post


def is_configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


def provider_label(settings: Settings) -> str | None:
    """The name on the sign-in page's "Sign in with ..." button; None without OIDC."""
    if not is_configured(settings):
        return None
    return settings.oidc_name or urlsplit(settings.oidc_issuer).hostname or "OpenID Connect"


def sign_in_button(settings: Settings, next_path: str = "/ui/") -> dict[str, str]:
    """The sign-in page's context for its "Sign in with ..." button; empty without OIDC."""
    label = provider_label(settings)
    if label is None:
        return {}
    return {"oidc_login": f"{LOGIN_PATH}?{urlencode({'next': safe_next(next_path)})}",
            "oidc_name": label}


def challenge_of(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcClient:
    """The relying party: discovery, the authorisation URL, the code exchange and the ID token.

    The discovery document and JWKS are cached per process; each network call has its own
    short-lived HTTP client (sign-ins are rare) with a timeout and a bounded answer.
    """

    def __init__(
        self, issuer: str, client_id: str, *, redirect_uri: str, cookie_key: bytes,
        client_secret: str = "", scopes: str = "openid",
    ) -> None:
        self.issuer = check_provider_url(issuer, "MODELLEDGER_OIDC_ISSUER")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = " ".join(dict.fromkeys(["openid", *scopes.split()]))
        self.redirect_uri = redirect_uri
        self.cookie_key = cookie_key
        self._provider: tuple[Provider, float] | None = None
        self._jwks: tuple[jwt.PyJWKSet, float] | None = None

    @classmethod
    def of(cls, settings: Settings) -> OidcClient:
        # A key of its own for the login cookie, derived from the service's secret: the
        # cookie can never pass for an API token, nor an API token for the cookie.
        secret = resolve_secret(settings).encode()
        return cls(
            settings.oidc_issuer, settings.oidc_client_id,
            redirect_uri=settings.base_url.rstrip("/") + CALLBACK_PATH,
            cookie_key=hmac.new(secret, b"modelledger oidc login cookie", hashlib.sha256).digest(),
            client_secret=settings.oidc_client_secret, scopes=settings.oidc_scopes,
        )

    async def begin(self, next_path: str) -> tuple[str, str]:
        """The provider's authorisation URL and the login cookie's value."""
        provider = await self.provider()
        pending = PendingLogin(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48),
            safe_next(next_path),
        )
        query = urlencode({
            "response_type": "code", "client_id": self.client_id,
            "redirect_uri": self.redirect_uri, "scope": self.scopes, "state": pending.state,
            "nonce": pending.nonce, "code_challenge": challenge_of(pending.verifier),
            "code_challenge_method": "S256",
        })
        separator = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{separator}{query}", self.seal(pending)

    def seal(self, pending: PendingLogin) -> str:
        claims = {"aud": _COOKIE_AUDIENCE, "exp": int(time.time()) + LOGIN_SECONDS,
                  "state": pending.state, "nonce": pending.nonce, "verifier": pending.verifier,
                  "next": pending.next_path}
        return jwt.encode(claims, self.cookie_key, algorithm="HS256")

    def unseal(self, cookie: str | None, state: str | None) -> PendingLogin:
        """The pending login of the cookie, if it is ours, in time and of this ``state``."""
        if not cookie:
            raise SignInError(400, "This sign-in was not started in this browser, or it took "
                              "longer than 10 minutes. Start again.", "no login cookie")
        try:
            claims = jwt.decode(cookie, self.cookie_key, algorithms=["HS256"],
                                audience=_COOKIE_AUDIENCE, options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise SignInError(400, "This sign-in took longer than 10 minutes. Start again.",
                              "login cookie expired") from None
        except jwt.PyJWTError:
            raise SignInError(400, "This sign-in cannot be checked. Start again.",
                              "login cookie invalid") from None
        pending = PendingLogin(
            str(claims.get("state", "")), str(claims.get("nonce", "")),
            str(claims.get("verifier", "")), safe_next(str(claims.get("next", ""))),
        )
        if not state or not hmac.compare_digest(pending.state.encode(), state.encode()):
            raise SignInError(400, "This answer does not belong to the sign-in started in this "
                              "browser. Start again.", "state mismatch")
        return pending

    async def complete(
        self, cookie: str | None, state: str | None, code: str | None, error: str | None
    ) -> tuple[Identity, PendingLogin]:
        """The callback: whose sign-in this answers, and who the provider says it is."""
        pending = self.unseal(cookie, state)
        if error is not None:
            shown = _code_of(error)
            raise SignInError(403, f"The identity provider did not sign you in ({shown}).",
                              f"provider error {shown}")
        if not code:
            raise SignInError(400, "The identity provider sent no sign-in code. Start again.",
                              "no code")
        return await self.finish(code, pending), pending

    async def finish(self, code: str, pending: PendingLogin) -> Identity:
        """Exchanges ``code`` and verifies the ID token that comes back."""
        provider = await self.provider()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": pending.verifier,
                "client_id": self.client_id}
        auth: httpx.BasicAuth | None = None
        if self.client_secret and provider.basic_auth:
            # RFC 6749 2.3.1: both parts form-encoded before the Basic encoding.
            auth = httpx.BasicAuth(quote_plus(self.client_id), quote_plus(self.client_secret))
        elif self.client_secret:
            form["client_secret"] = self.client_secret
        status, answer = await _fetch(provider.token_endpoint, data=form, auth=auth)
        if status in {400, 401}:
            error = _code_of(answer.get("error"))
            raise SignInError(400, "The identity provider did not accept this sign-in. Start "
                              "again.", f"token endpoint refused the code: {error}")
        if status != 200:  # noqa: PLR2004 - HTTP OK
            raise _provider_failed(f"token endpoint answered {status}")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise _provider_failed("token answer without an id_token")
        return await self.verify_id_token(id_token, pending.nonce)

    async def verify_id_token(self, id_token: str, nonce: str) -> Identity:
        """The identity an ID token states, once its signature and claims hold (OIDC 3.1.3.7)."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise _invalid("malformed ID token") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise _invalid(f"ID token algorithm {algorithm!r} is not accepted")
        key = await self._signing_key(kid)
        try:
            claims = jwt.decode(
                id_token, key, algorithms=[str(algorithm)], audience=self.client_id,
                issuer=self.issuer, leeway=CLOCK_SKEW,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as error:
            raise _invalid(f"ID token refused: {error}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != self.client_id:
            raise _invalid("ID token's azp is not this client")
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(
                claims["nonce"].encode(), nonce.encode()):
            raise _invalid("ID token's nonce is not this sign-in's")
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:  # noqa: PLR2004 - OIDC 2
            raise _invalid("ID token's sub is not a string of 1 to 255 characters")
        return Identity(subject, self.issuer, display_name(claims))

    async def provider(self) -> Provider:
        """The discovery document's endpoints, fetched once an hour."""
        if self._provider is not None and time.monotonic() < self._provider[1]:
            return self._provider[0]
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, document = await _fetch(url)
        if status != 200:  # noqa: PLR2004 - HTTP OK
            raise _provider_failed(f"discovery answered {status}")
        # OIDC Discovery 4.3: the document must name the issuer it was fetched for.
        if document.get("issuer") != self.issuer:
            raise _provider_failed("discovery names another issuer")
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise _provider_failed("provider does not offer PKCE with S256")
        try:
            endpoints = [check_provider_url(str(document.get(name, "")), name)
                         for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")]
        except ValueError as error:
            raise _provider_failed(f"discovery: {error}") from None
        auth_methods = document.get("token_endpoint_auth_methods_supported")
        basic = not isinstance(auth_methods, list) or "client_secret_basic" in auth_methods
        authorization, token, jwks = endpoints
        provider = Provider(authorization, token, jwks, basic_auth=basic)
        self._provider = (provider, time.monotonic() + DISCOVERY_SECONDS)
        return provider

    async def _signing_key(self, kid: object) -> jwt.PyJWK:
        """The JWKS key named ``kid`` (or the only one); an unknown kid refetches the set."""
        cached = self._jwks
        if cached is None or time.monotonic() - cached[1] >= JWKS_SECONDS:
            cached = await self._fetch_jwks()
        key = _pick(cached[0], kid)
        if key is None and time.monotonic() - cached[1] >= JWKS_COOLDOWN:
            # The provider may have rotated its keys since the last fetch.
            key = _pick((await self._fetch_jwks())[0], kid)
        if key is None:
            raise _invalid(f"no signing key {kid!r} at the identity provider")
        return key

    async def _fetch_jwks(self) -> tuple[jwt.PyJWKSet, float]:
        """The provider's key set and when it was fetched."""
        status, document = await _fetch((await self.provider()).jwks_uri)
        if status != 200:  # noqa: PLR2004 - HTTP OK
            raise _provider_failed(f"JWKS answered {status}")
        try:
            keys = jwt.PyJWKSet.from_dict(document)
        except jwt.PyJWTError as error:
            raise _provider_failed(f"JWKS unusable: {error}") from None
        self._jwks = (keys, time.monotonic())
        return self._jwks


def _pick(keys: jwt.PyJWKSet, kid: object) -> jwt.PyJWK | None:
    usable = [k for k in keys if k.public_key_use in {None, "sig"}
              and k.algorithm_name in ALGORITHMS]
    if kid is None:
        return usable[0] if len(usable) == 1 else None
    return next((k for k in usable if k.key_id == kid), None)


def _invalid(reason: str) -> SignInError:
    return SignInError(401, "The identity provider's answer could not be verified, so you are "
                       "not signed in. Start again.", reason)


def _code_of(value: object) -> str:
    """An OAuth error code fit for a log line or a page (RFC 6749 5.2: printable ASCII)."""
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text[:64] if c.isalnum() or c in "_.-") or "unknown"


async def _fetch(url: str, **post: Any) -> tuple[int, dict[str, Any]]:
    """GET ``url`` (POST with ``post``'s form and auth): its status and JSON object, bounded."""
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
            method = "POST" if post else "GET"
            async with client.stream(method, url, headers={"Accept": "application/json"},
                                     **post) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise _provider_failed(f"{urlsplit(url).path} answered too much")
                status = response.status_code
    except httpx.HTTPError as error:
        raise _provider_failed(f"{urlsplit(url).path}: {type(error).__name__}") from None
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        if status >= 400:  # noqa: PLR2004 - an error answer need not be JSON
            return status, {}
        raise _provider_failed(f"{urlsplit(url).path} answered no JSON object")
    return status, document


NextParam = Annotated[str | None, QueryParameter(name="next", max_length=2048, required=False)]
CallbackParam = Annotated[str | None, QueryParameter(max_length=MAX_PARAM, required=False)]
# ``state`` is a name Litestar keeps for the app state.
StateParam = Annotated[
    str | None, QueryParameter(name="state", max_length=MAX_PARAM, required=False)
]


def oidc_router(settings: Settings) -> Router:
    """``/oidc/login`` and ``/oidc/callback`` under the dashboard's router (both 404 when no
    provider is configured)."""
    client = OidcClient.of(settings) if is_configured(settings) else None

    def configured() -> OidcClient:
        if client is None:
            raise NotFoundException
        return client

    @get("/login", name="ui-oidc-login")
    async def login(request: Request[Any, Any, Any], next_: NextParam = None) -> Response[Any]:
        try:
            url, sealed = await configured().begin(next_ or "/ui/")
        except SignInError as error:
            return _page(error)
        response: Response[Any] = Redirect(url, status_code=302, headers=NO_STORE)
        response.set_cookie(_login_cookie(request, sealed, LOGIN_SECONDS))
        return response

    @get("/callback", name="ui-oidc-callback")
    async def callback(
        request: Request[Any, Any, Any], code: CallbackParam = None, state_: StateParam = None,
        error: CallbackParam = None,
    ) -> Response[Any]:
        try:
            identity, pending = await configured().complete(
                request.cookies.get(LOGIN_COOKIE), state_, code, error)
        except SignInError as refused:
            return _page(refused)
        log.info("oidc sign-in", extra={"subject": identity.subject, "issuer": identity.issuer})
        response = await begin_session(
            request, subject=identity.subject, issuer=identity.issuer, scopes=DASHBOARD_SCOPES,
            next_path=pending.next_path, name=identity.name,
        )
        response.set_cookie(_login_cookie(request, "", 0))  # one use: the state is spent
        response.headers.update(NO_STORE)
        return response

    return Router("/oidc", route_handlers=[login, callback], opt=PUBLIC,
                  include_in_schema=False)


def _login_cookie(request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    # Lax, not Strict: the provider's redirect back is a cross-site navigation.
    return Cookie(key=LOGIN_COOKIE, value=value, path=PATH, httponly=True, samesite="lax",
                  secure=request.url.scheme == "https", max_age=max_age)


def _page(error: SignInError) -> Template:
    """The dashboard's error page for a refused sign-in; the reason goes to the log only."""
    log.warning("oidc sign-in refused", extra={"reason": error.reason,
                                                "status": error.status_code})
    return Template("error.html", status_code=error.status_code, headers=NO_STORE, context={
        "status": error.status_code, "message": "Sign-in failed", "detail": error.message,
        "signed_in": False, "title": "Sign-in failed", "retry": "/ui/login"})
