"""Problem details for every failure, and an OpenAPI document that tells the truth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from projections.models import queries
from tests.api.conftest import Headers, assert_problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient


def test_unexpected_errors_answer_500_without_internals(
    client: TestClient[Any],
    alice: Headers,
    register: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = register(alice)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("SELECT * FROM model_view -- secret detail")

    # The read path below the handler (both the sync and the async reads convert rows here).
    monkeypatch.setattr(queries, "model_row", broken)
    body = assert_problem(client.get(f"/api/models/{model['id']}", headers=alice), 500)
    assert "SELECT" not in str(body)
    assert "Traceback" not in str(body)


def test_unknown_routes_and_methods_are_problems(client: TestClient[Any], alice: Headers) -> None:
    assert_problem(client.get("/api/nothing-here", headers=alice), 404)
    assert_problem(client.patch("/api/models", headers=alice), 405)


def test_wrong_types_answer_400(
    client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
) -> None:
    model = register(alice)
    body = {"request_id": "r", "response_time_ms": "fast", "input_bytes": 1,
            "output_bytes": 1, "success": True}
    assert_problem(client.post(f"/api/models/{model['id']}/usage", json=body, headers=alice), 400)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_openapi_documents_security_truthfully(client: TestClient[Any]) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            secured = bool(operation.get("security"))
            assert secured == path.startswith("/api"), (method, path)
            if secured:
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
    register = schema["paths"]["/api/models"]["post"]["requestBody"]["content"]
    assert set(register) == {"application/json", "multipart/form-data"}
