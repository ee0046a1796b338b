"""User B cannot see or touch anything of user A's model: every route answers like a missing one."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.api.conftest import Headers, assert_problem, usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient


@pytest.fixture
def alices_model(alice: Headers, register: Callable[..., dict[str, Any]]) -> str:
    return str(register(alice, "private")["id"])


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "stolen"}),
        ("DELETE", "", None),
        ("GET", "/history", None),
        ("POST", "/usage", usage("r1")),
        ("GET", "/usage", None),
    ],
)
def test_another_users_model_answers_404(  # noqa: PLR0917 - fixtures and parameters
    client: TestClient[Any],
    bob: Headers,
    alices_model: str,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    url = f"/api/models/{alices_model}{suffix}"
    response = client.request(method, url, json=body, headers=bob)
    missing = client.request(method, f"/api/models/{uuid.uuid4()}{suffix}", json=body, headers=bob)
    assert_problem(response, 404)
    assert response.json() == missing.json()


def test_another_users_model_is_not_listed_nor_changed(
    client: TestClient[Any], alice: Headers, bob: Headers, alices_model: str
) -> None:
    assert client.get("/api/models", headers=bob).json()["total"] == 0
    client.put(f"/api/models/{alices_model}", json={"name": "stolen"}, headers=bob)
    client.delete(f"/api/models/{alices_model}", headers=bob)
    body = client.get(f"/api/models/{alices_model}", headers=alice).json()
    assert (body["name"], body["status"]) == ("private", "active")


def test_batch_usage_for_another_users_model_is_rejected(
    client: TestClient[Any], bob: Headers, alices_model: str
) -> None:
    record = {**usage("r1"), "model_id": alices_model}
    result = client.post("/api/usage/batch", json={"records": [record]}, headers=bob).json()
    assert result["accepted"] == 0
    assert result["rejected"][0]["index"] == 0
