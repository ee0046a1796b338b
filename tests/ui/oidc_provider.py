"""A small OpenID Connect provider on a real port: discovery, an authorisation endpoint that
approves one configured user at once, a token endpoint that checks the PKCE verifier and the
client, and a JWKS with an RS256 key. Tests change its knobs to make it misbehave."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

KID = "provider-key-1"


@cache
def rsa_key(name: str) -> RSAPrivateKey:
    """One RSA key per name, made once per test run (2048 bits take a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def s256(verifier: str) -> str:
    # Written here again, not imported from the code under test, so a wrong challenge fails.
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class OidcProvider:
    """The provider at ``issuer``; ``subject`` is the user it signs in."""

    def __init__(self, *, client_id: str = "modelledger-dashboard", client_secret: str = "",
                 subject: str = "carol", name: str = "Carol Example") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.subject = subject
        self.name = name
        self.redirect_uris: set[str] = set()
        # Knobs: claims merged into the next ID tokens, the key that signs them, and
        # an authorisation endpoint that refuses.
        self.id_token_claims: dict[str, Any] = {}
        self.kid = KID  # the key the JWKS publishes and tokens name; a new one rotates
        self.signing_key = ""  # the key that signs ID tokens, when not the published one
        self.deny = False
        self.discovery_overrides: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.gets: Counter[str] = Counter()  # GET requests by path
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll: shutdown() waits for the loop's next poll, in every test's teardown.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": (
                ["client_secret_basic", "client_secret_post"] if self.client_secret else ["none"]
            ),
            **self.discovery_overrides,
        }

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key(self.kid).public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def access_token(self, subject: str | None = None, scope: str = "models") -> str:
        """A token of this provider the API accepts (when it trusts this JWKS)."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject or self.subject, "scope": scope,
                  "iat": now, "exp": now + 3600}
        return jwt.encode(claims, rsa_key(self.kid), algorithm="RS256",
                          headers={"kid": self.kid})

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": self.subject, "aud": self.client_id,
                  "iat": now, "exp": now + 300, "nonce": nonce, "name": self.name,
                  **self.id_token_claims}
        return jwt.encode(claims, rsa_key(self.signing_key or self.kid), algorithm="RS256",
                          headers={"kid": self.kid})

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) of the authorisation endpoint: approves at once."""
        self.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            return 400, {}, "unknown client or redirect_uri"
        back = {"state": query.get("state", "")}
        if self.deny:
            back["error"] = "access_denied"
        elif (query.get("response_type") != "code" or query.get("code_challenge_method") != "S256"
              or not query.get("code_challenge") or "openid" not in query.get("scope", "").split()):
            back["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = {"challenge": query["code_challenge"],
                                    "redirect_uri": redirect_uri,
                                    "nonce": query.get("nonce", "")}
            back["code"] = code
        return 302, {"Location": f"{redirect_uri}?{urlencode(back)}"}, ""

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        if not self._client_authenticated(form, authorization):
            return 401, {"error": "invalid_client"}
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)  # a code works once
        if (form.get("grant_type") != "authorization_code" or grant is None
                or form.get("redirect_uri") != grant["redirect_uri"]):
            return 400, {"error": "invalid_grant"}
        if s256(form.get("code_verifier", "")) != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier"}
        return 200, {"access_token": self.access_token(), "token_type": "Bearer",
                     "expires_in": 3600, "id_token": self.id_token(grant["nonce"])}

    def _client_authenticated(self, form: dict[str, str], authorization: str) -> bool:
        if not self.client_secret:
            return form.get("client_id") == self.client_id
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization.removeprefix("Basic ")).decode()
            client_id, _, secret = decoded.partition(":")
            return (unquote_plus(client_id), unquote_plus(secret)) == (
                self.client_id, self.client_secret)
        return (form.get("client_id"), form.get("client_secret")) == (
            self.client_id, self.client_secret)


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            provider.gets[parts.path] += 1
            documents = {"/.well-known/openid-configuration": provider.discovery,
                         "/jwks": provider.jwks}
            if parts.path in documents:
                self._json(200, documents[parts.path]())
            elif parts.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                status, headers, body = provider.authorize(query)
                self._send(status, body.encode(), "text/plain", headers)
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/token":
                self._send(404, b"not found", "text/plain")
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            status, answer = provider.token(form, self.headers.get("Authorization", ""))
            self._json(status, answer)

        def _json(self, status: int, document: dict[str, Any]) -> None:
            self._send(status, json.dumps(document).encode(), "application/json")

        def _send(self, status: int, body: bytes, kind: str,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler
