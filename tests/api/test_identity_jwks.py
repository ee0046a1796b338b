"""RS256 tokens signed by an identity provider, whose keys come from its JWKS document, served
here over real HTTP by a small server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient

from api import tokens
from api.app import create_app
from modelledger.bootstrap import build
from tests.api.conftest import SECRET, assert_problem, bearer
from tests.conftest import make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

IDP = "https://idp.example"


@cache
def _key(name: str) -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(kid: str) -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(_key(kid).public_key(), as_dict=True)
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


def rs256(kid: str, *, signed_by: str | None = None, **claims: Any) -> dict[str, str]:
    """A bearer header for an RS256 token naming ``kid``, signed by that key (or another)."""
    body = {"sub": "alice", "iss": IDP, "scope": "models",
            "exp": datetime.now(UTC) + timedelta(hours=1), **claims}
    token = jwt.encode(body, _key(signed_by or kid), algorithm="RS256", headers={"kid": kid})
    return {"Authorization": f"Bearer {token}"}


class JwksServer:
    """Serves ``keys`` as a JWKS document and counts the fetches."""

    def __init__(self, *kids: str) -> None:
        self.kids = list(kids)
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps({"keys": [_jwk(k) for k in server.kids]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer("k1", "k2")
    yield server
    server.close()


@pytest.fixture
def app_with(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    opened: list[TestClient[Any]] = []

    def open_client(**overrides: object) -> TestClient[Any]:
        settings = make_settings("sqlite", tmp_path / uuid.uuid4().hex, request,
                                 jwt_secret=SECRET, **overrides)
        client = TestClient(create_app(build(settings), close_container=True))
        opened.append(client.__enter__())
        return client

    yield open_client
    for client in opened:
        client.__exit__(None, None, None)


def test_tokens_signed_by_any_key_of_the_jwks_are_accepted(
    app_with: Any, jwks: JwksServer
) -> None:
    client = app_with(jwt_jwks_url=jwks.url)
    for kid in ("k1", "k2"):
        assert client.get("/api/models", headers=rs256(kid)).status_code == 200
    assert client.get("/api/models", headers=bearer("bob")).status_code == 200  # HS256 too
    assert jwks.fetches == 1  # cached


def test_the_subject_of_a_jwks_token_is_a_user_of_its_issuer(
    app_with: Any, jwks: JwksServer
) -> None:
    client = app_with(jwt_jwks_url=jwks.url, jwt_issuer=IDP)
    created = client.post("/api/models", json={"name": "m", "framework": "onnx"},
                          headers=rs256("k1"))
    assert created.status_code == 201, created.text
    history = client.get(f"/api/models/{created.json()['id']}/history", headers=rs256("k2"))
    [entry] = history.json()["items"]
    assert (entry["actor"], entry["actor_issuer"]) == ("alice", IDP)


def test_a_token_signed_by_a_key_not_in_the_jwks_is_refused(
    app_with: Any, jwks: JwksServer
) -> None:
    client = app_with(jwt_jwks_url=jwks.url)
    for headers in (rs256("k3"), rs256("k1", signed_by="k3"), rs256("k1", signed_by="k2")):
        response = client.get("/api/models", headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith('Bearer realm="modelledger"')


def test_a_rotated_key_is_accepted_once_the_document_lists_it_without_restarting(
    app_with: Any, jwks: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "JWKS_REFRESH_COOLDOWN", 0.5)
    client = app_with(jwt_jwks_url=jwks.url)
    assert client.get("/api/models", headers=rs256("k1")).status_code == 200
    jwks.kids = ["k2", "k3"]  # the identity provider rotates: k3 is new
    time.sleep(0.6)
    assert client.get("/api/models", headers=rs256("k3")).status_code == 200
    assert jwks.fetches == 2  # the unknown kid fetched the document again


def test_unknown_kids_do_not_fetch_the_document_for_every_request(
    app_with: Any, jwks: JwksServer
) -> None:
    client = app_with(jwt_jwks_url=jwks.url)
    for _ in range(20):
        assert_problem(client.get("/api/models", headers=rs256(f"x-{uuid.uuid4()}",
                                                               signed_by="k3")), 401)
    assert jwks.fetches <= 2  # the first fetch, then at most one refresh per cooldown


def test_a_key_removed_from_the_jwks_stops_working_once_the_cache_expires(
    app_with: Any, jwks: JwksServer
) -> None:
    # The verified-token cache keeps a JWKS token no longer than the document it was checked
    # against, so revoking a key takes effect within MODELLEDGER_JWT_JWKS_CACHE_SECONDS.
    client = app_with(jwt_jwks_url=jwks.url, jwt_jwks_cache_seconds=1)
    headers = rs256("k1")
    assert client.get("/api/models", headers=headers).status_code == 200
    jwks.kids = ["k2"]
    assert client.get("/api/models", headers=headers).status_code == 200  # cached, for now
    time.sleep(1.2)
    assert_problem(client.get("/api/models", headers=headers), 401)
    assert client.get("/api/models", headers=rs256("k2")).status_code == 200


def test_an_unreachable_jwks_answers_503_with_retry_after(
    app_with: Any, jwks: JwksServer
) -> None:
    url = jwks.url
    jwks.close()
    client = app_with(jwt_jwks_url=url)
    response = client.get("/api/models", headers=rs256("k1"))
    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert client.get("/api/models", headers=bearer("bob")).status_code == 200  # HS256 still
