"""Text PostgreSQL cannot store (a NUL character) is refused with a 4xx naming the field, and
never stops the service for everyone else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.api.conftest import assert_problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from tests.api.conftest import Headers



@pytest.mark.parametrize("field", ["name", "description", "framework"])
def test_a_nul_in_a_new_models_text_is_refused_and_others_still_register(
    client: TestClient[Any],
    alice: Headers,
    bob: Headers,
    register: Callable[..., dict[str, Any]],
    field: str,
) -> None:
    body = {"name": "m", "description": "", "framework": "onnx", field: "a\x00b"}
    response = client.post("/api/models", json=body, headers=alice)
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)
    register(bob, "unharmed")
    assert client.get("/api/models", headers=bob).json()["total"] == 1


def test_a_nul_in_a_rename_is_refused_and_others_still_register(
    client: TestClient[Any],
    alice: Headers,
    bob: Headers,
    register: Callable[..., dict[str, Any]],
) -> None:
    model = register(alice, "m")
    response = client.put(f"/api/models/{model['id']}", json={"name": "a\x00b"}, headers=alice)
    assert 400 <= response.status_code < 500, response.text
    register(bob, "unharmed")
