"""Tokens: issuer and audience checks, the HS256 secret's minimum length, no scope without one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from config.settings import load_settings
from modelledger.bootstrap import build
from tests.api.conftest import SECRET, assert_problem, signed
from tests.conftest import make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

IDP = "https://idp.example"
AUDIENCE = "modelledger"


@pytest.fixture
def app_with(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A client of the real app over a SQLite container built with these settings."""
    opened: list[Any] = []

    def open_client(**overrides: object) -> TestClient[Any]:
        settings = make_settings("sqlite", tmp_path / uuid.uuid4().hex, request,
                                 jwt_secret=SECRET, **overrides)
        container = build(settings)
        client = TestClient(create_app(container, close_container=True))
        opened.append(client.__enter__())
        return client

    yield open_client
    for client in opened:
        client.__exit__(None, None, None)


class TestIssuer:
    def test_only_tokens_of_the_configured_issuer_are_accepted(self, app_with: Any) -> None:
        client = app_with(jwt_issuer=IDP)
        assert client.get("/api/models", headers=signed(sub="a", iss=IDP, scope="models")
                          ).status_code == 200
        for refused in (signed(sub="a", iss="https://evil.example", scope="models"),
                        signed(sub="a", scope="models")):
            response = client.get("/api/models", headers=refused)
            assert_problem(response, 401)
            assert "iss" in response.json()["detail"]

    def test_without_a_configured_issuer_any_issuer_or_none_is_accepted(
        self, app_with: Any
    ) -> None:
        client = app_with()
        for headers in (signed(sub="a", iss=IDP, scope="models"), signed(sub="a", scope="models")):
            assert client.get("/api/models", headers=headers).status_code == 200


class TestAudience:
    def test_a_token_for_the_configured_audience_is_accepted(self, app_with: Any) -> None:
        client = app_with(jwt_audience=AUDIENCE)
        for aud in (AUDIENCE, ["another-service", AUDIENCE]):
            headers = signed(sub="a", aud=aud, scope="models")
            assert client.get("/api/models", headers=headers).status_code == 200

    def test_a_token_for_another_audience_or_none_is_refused(self, app_with: Any) -> None:
        client = app_with(jwt_audience=AUDIENCE)
        for headers in (signed(sub="a", aud="another-service", scope="models"),
                        signed(sub="a", scope="models")):
            response = client.get("/api/models", headers=headers)
            assert_problem(response, 401)
            assert "aud" in response.json()["detail"].lower()

    def test_a_token_carrying_an_audience_is_refused_when_none_is_configured(
        self, app_with: Any
    ) -> None:
        # PyJWT's rule, kept: a token meant for some audience is not meant for every service.
        client = app_with()
        assert_problem(client.get("/api/models", headers=signed(sub="a", aud=AUDIENCE,
                                                                 scope="models")), 401)


class TestSecretLength:
    def test_a_secret_shorter_than_32_bytes_is_refused_naming_the_setting(
        self, tmp_path: Path
    ) -> None:
        container = build(load_settings({}, data_dir=tmp_path, jwt_secret="s" * 31))
        try:
            with pytest.raises(RuntimeError, match=r"MODELLEDGER_JWT_SECRET.*32 bytes"):
                create_app(container)
        finally:
            container.close()

    def test_a_32_byte_secret_is_accepted(self, tmp_path: Path) -> None:
        container = build(load_settings({}, data_dir=tmp_path, jwt_secret="s" * 32))
        try:
            with TestClient(create_app(container)) as client:
                headers = signed("s" * 32, sub="a", scope="models")
                assert client.get("/api/models", headers=headers).status_code == 200
        finally:
            container.close()

    def test_serve_refuses_to_start_with_a_short_secret(self, tmp_path: Path) -> None:
        with socket.socket() as taken:  # a port in use: serving would fail anyway, but later
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            env = {**os.environ, "MODELLEDGER_DATA_DIR": str(tmp_path),
                   "MODELLEDGER_DATABASE_URL": "", "MODELLEDGER_JWT_SECRET": "too-short",
                   "MODELLEDGER_PORT": str(taken.getsockname()[1])}
            result = subprocess.run(
                [sys.executable, "-m", "modelledger", "serve"], env=env, capture_output=True,
                text=True, timeout=60, check=False,
            )
        assert result.returncode != 0
        assert "MODELLEDGER_JWT_SECRET" in result.stderr
        assert "32 bytes" in result.stderr


# A fixed id: the test ids must be the same in every collection (pytest-xdist compares them).
NOBODYS_MODEL = uuid.UUID("00000000-0000-4000-8000-000000000001")
NO_SCOPE_ROUTES = [
    ("GET", "/api/models"),
    ("POST", "/api/models"),
    ("GET", "/api/usage/summary"),
    ("POST", "/api/usage/batch"),
    ("POST", f"/api/models/{NOBODYS_MODEL}/usage"),
    ("GET", "/api/projections"),
]


@pytest.mark.parametrize(("method", "url"), NO_SCOPE_ROUTES)
def test_a_token_without_scope_gets_no_scope(
    client: TestClient[Any], method: str, url: str
) -> None:
    response = client.request(method, url, headers=signed(sub=f"u-{uuid.uuid4()}"), json={})
    assert_problem(response, 403)
