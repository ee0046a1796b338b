"""Rate limits: per principal and minute on /api, answered with 429, Retry-After and RateLimit-*."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from tests.api.conftest import SECRET, assert_problem, bearer, usage
from tests.conftest import make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from config.settings import Settings
    from services.container import Container

LIMIT = 5
INGEST_LIMIT = 3
# The limits do not depend on the backend: one is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(
        backend, tmp_path, request, jwt_secret=SECRET, rate_limit_per_minute=LIMIT,
        rate_limit_ingest_per_minute=INGEST_LIMIT,
    )


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(container)) as test_client:
        yield test_client


def _user() -> dict[str, str]:
    return bearer(f"user-{uuid.uuid4()}", "models", "usage:write")


def test_the_request_over_the_limit_gets_429_with_retry_after_and_ratelimit_headers(
    client: TestClient[Any],
) -> None:
    alice = _user()
    for used in range(1, LIMIT + 1):
        response = client.get("/api/models", headers=alice)
        assert response.status_code == 200, response.text
        assert response.headers["RateLimit-Limit"] == str(LIMIT)
        assert response.headers["RateLimit-Remaining"] == str(LIMIT - used)
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60

    refused = client.get("/api/models", headers=alice)

    body = assert_problem(refused, 429)
    assert "retry after" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == str(LIMIT)
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["RateLimit-Reset"]) <= 60


def test_another_principal_is_not_limited_by_the_first(client: TestClient[Any]) -> None:
    alice, bob = _user(), _user()
    for _ in range(LIMIT):
        client.get("/api/models", headers=alice)
    assert client.get("/api/models", headers=alice).status_code == 429

    response = client.get("/api/models", headers=bob)

    assert response.status_code == 200
    assert response.headers["RateLimit-Remaining"] == str(LIMIT - 1)


def test_every_route_of_api_counts_against_one_budget(client: TestClient[Any]) -> None:
    alice = _user()
    created = client.post("/api/models", json={"name": "m", "framework": "onnx"}, headers=alice)
    model_id = created.json()["id"]
    for path in ["/api/models", f"/api/models/{model_id}", f"/api/models/{model_id}/history",
                 "/api/usage/summary"][: LIMIT - 1]:
        assert client.get(path, headers=alice).status_code == 200, path

    assert_problem(client.get(f"/api/models/{model_id}/usage", headers=alice), 429)


def test_every_token_of_one_principal_shares_its_budget(client: TestClient[Any]) -> None:
    subject = f"carol-{uuid.uuid4()}"
    for minutes in range(LIMIT):  # a new token for every request: different bytes each
        headers = bearer(subject, "models", ttl=timedelta(minutes=10 + minutes))
        assert client.get("/api/models", headers=headers).status_code == 200

    assert client.get("/api/models", headers=bearer(subject)).status_code == 429


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics",
                                  "/schema/openapi.json"])
def test_health_metrics_and_schema_are_never_limited(client: TestClient[Any], path: str) -> None:
    for _ in range(3 * LIMIT):
        response = client.get(path, headers=_user())
        assert response.status_code == 200, response.text
        assert "RateLimit-Limit" not in response.headers


def test_a_request_without_a_valid_token_is_refused_before_it_is_counted(
    client: TestClient[Any],
) -> None:
    for _ in range(3 * LIMIT):
        assert_problem(client.get("/api/models"), 401)
        assert_problem(client.get("/api/models", headers={"Authorization": "Bearer x"}), 401)

    assert client.get("/api/models", headers=_user()).status_code == 200


def test_usage_ingest_counts_against_its_own_limit_not_the_api_one(
    client: TestClient[Any],
) -> None:
    alice = _user()
    created = client.post("/api/models", json={"name": "m", "framework": "onnx"}, headers=alice)
    model_id = created.json()["id"]
    for n in range(INGEST_LIMIT - 1):
        response = client.post(f"/api/models/{model_id}/usage", json=usage(f"r{n}"),
                               headers=alice)
        assert response.status_code == 201, response.text
        assert response.headers["RateLimit-Limit"] == str(INGEST_LIMIT)
    batch = client.post("/api/usage/batch", headers=alice,
                        json={"records": [{"model_id": model_id, **usage("b")}]})
    assert batch.status_code == 200, batch.text

    refused = client.post(f"/api/models/{model_id}/usage", json=usage("late"), headers=alice)
    assert_problem(refused, 429)
    assert refused.headers["RateLimit-Limit"] == str(INGEST_LIMIT)
    assert "Retry-After" in refused.headers
    assert client.post("/api/usage/batch", headers=alice, json={"records": []}).status_code == 429
    # The other routes have their own budget: the registration above used one of five.
    listed = client.get("/api/models", headers=alice)
    assert listed.status_code == 200
    assert listed.headers["RateLimit-Remaining"] == str(LIMIT - 2)


def test_a_limit_of_zero_turns_rate_limiting_off(container: Container) -> None:
    unlimited = dataclasses.replace(
        container,
        settings=dataclasses.replace(
            container.settings, rate_limit_per_minute=0, rate_limit_ingest_per_minute=0
        ),
    )
    alice = _user()
    with TestClient(create_app(unlimited)) as client:
        for _ in range(3 * LIMIT):
            response = client.get("/api/models", headers=alice)
            assert response.status_code == 200
            assert "RateLimit-Limit" not in response.headers
