"""The real app on the real container (SQLite and PostgreSQL), and tokens for test users."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.tokens import issue_token
from tests.conftest import make_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from config.settings import Settings
    from services.container import Container

SECRET = "test-secret-long-enough-for-every-hmac-algorithm-0123456789abcdef"  # noqa: S105 - a test secret
MAX_UPLOAD = 64 * 1024


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(backend, tmp_path, request, jwt_secret=SECRET, max_upload_bytes=MAX_UPLOAD)


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(container)) as test_client:
        yield test_client


Headers = dict[str, str]


def bearer(subject: str, *scopes: str, ttl: timedelta = timedelta(hours=1)) -> Headers:
    token = issue_token(SECRET, subject, scopes or ("models",), ttl)
    return {"Authorization": f"Bearer {token}"}


def signed(secret: str = SECRET, **claims: Any) -> Headers:
    """A bearer header for exactly these claims (an hour's ``exp`` unless given), HS256."""
    claims.setdefault("exp", datetime.now(UTC) + timedelta(hours=1))
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


@pytest.fixture
def alice() -> Headers:
    return bearer(f"alice-{uuid.uuid4()}")


@pytest.fixture
def bob() -> Headers:
    return bearer(f"bob-{uuid.uuid4()}")


@pytest.fixture
def register(client: TestClient[Any]) -> Callable[..., dict[str, Any]]:
    def _register(headers: Headers, name: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"name": name or f"model-{uuid.uuid4().hex[:8]}", "framework": "pytorch", **fields}
        response = client.post("/api/models", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return _register


def usage(request_id: str, **fields: Any) -> dict[str, Any]:
    return {"request_id": request_id, "response_time_ms": 12.5, "input_bytes": 100,
            "output_bytes": 200, "success": True, **fields}


def assert_problem(response: Any, status: int, names: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status
    if names is not None:
        assert names in {p["name"] for p in body.get("invalid_params", [])}, body
    return body
