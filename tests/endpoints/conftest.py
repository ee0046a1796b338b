"""The endpoint tests' world: the real app on a real port over SQLite and PostgreSQL, a user who
registers real ONNX models through /api, and API keys."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from api.app import create_app
from modelledger.bootstrap import build
from tests.api.conftest import SECRET, bearer
from tests.conftest import make_settings
from tests.endpoints.servers import LiveServer
from tests.onnx_models import logistic_regression

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from config.settings import Settings
    from services.container import Container


@pytest.fixture
def endpoint_settings() -> dict[str, object]:
    """Overrides of a test module (e.g. an upstream host); the world is built from them."""
    return {}


@pytest.fixture
def settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
    endpoint_settings: dict[str, object],
) -> Settings:
    overrides: dict[str, object] = {
        "jwt_secret": SECRET, "rate_limit_per_minute": 0, "endpoint_cache_seconds": 0.5,
        "max_upload_bytes": 4 * 1024 * 1024, **endpoint_settings,
    }
    return make_settings(backend, tmp_path, request, **overrides)


@pytest.fixture
def live(settings: Settings) -> Iterator[World]:
    container = build(settings)
    # The projection worker runs as in `serve`: endpoints read what it projects.
    stop = threading.Event()
    threads = container.start_worker(stop)
    try:
        with LiveServer(create_app(container)) as server, httpx.Client(
            base_url=server.url, timeout=30
        ) as http:
            yield World(container, server.url, http)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        container.close()


@dataclass
class World:
    container: Container
    url: str
    http: httpx.Client

    def user(self, name: str = "alice") -> User:
        return User(self, bearer(f"{name}-{uuid.uuid4()}"))


@dataclass
class User:
    world: World
    headers: dict[str, str]

    def register_onnx(self, content: bytes | None = None, **fields: Any) -> dict[str, Any]:
        model = content if content is not None else logistic_regression()
        response = self.world.http.post(
            "/api/models", data={"name": f"m-{uuid.uuid4().hex[:8]}", "framework": "onnx",
                                 **fields},
            files={"file": ("model.onnx", model, "application/octet-stream")},
            headers=self.headers,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def register(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"m-{uuid.uuid4().hex[:8]}", "framework": "sklearn", **fields}
        response = self.world.http.post("/api/models", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def key(self, models: list[str] | None = None, name: str = "app") -> dict[str, Any]:
        response = self.world.http.post(
            "/api/keys", json={"name": name, "models": models}, headers=self.headers
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def put(self, model_id: str, **fields: Any) -> httpx.Response:
        return self.world.http.put(f"/api/models/{model_id}", json=fields, headers=self.headers)


def key_header(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()
