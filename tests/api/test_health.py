"""Readiness: the database answers and no projection is stalled; metrics export the lag."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from projections import watchdog
from tests.api.conftest import Headers, assert_problem
from tests.helpers import metric_sample

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from services.container import Container


def _stalled(container: Container, **_: Any) -> list[watchdog.ProjectionHealth]:
    return [
        watchdog.ProjectionHealth("models", 3, 3, 0, 10.0, stalled=False),
        watchdog.ProjectionHealth("usage", 5, 12, 7, 600.0, stalled=True),
    ]


def test_ready_reports_every_projection_with_its_lag(client: TestClient[Any]) -> None:
    body = client.get("/health/ready").json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["stalled"] == []
    assert {p["name"] for p in body["projections"]} == {"models", "usage"}
    assert all(p["lag"] == p["head"] - p["position"] for p in body["projections"])


def test_a_stalled_projection_makes_the_instance_unready(
    client: TestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchdog, "check", _stalled)
    body = assert_problem(client.get("/health/ready"), 503)
    assert body["stalled"] == ["usage"]
    assert body["database"] == "ok"
    assert {p["name"]: p["lag"] for p in body["projections"]} == {"models": 0, "usage": 7}
    assert "usage" in body["detail"]


def test_an_unreachable_database_makes_the_instance_unready(
    client: TestClient[Any], container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(container.store, "read", unreachable)
    body = assert_problem(client.get("/health/ready"), 503)
    assert body["database"] == "unreachable"


def test_metrics_export_projection_lag_and_stalls(
    client: TestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchdog, "check", _stalled)
    text = client.get("/metrics").text
    assert 'modelledger_projection_lag_events{projection="usage"} 7.0' in text
    assert 'modelledger_projection_stalled{projection="usage"} 1.0' in text
    assert 'modelledger_projection_stalled{projection="models"} 0.0' in text


def _ingested(text: str, route: str) -> float:
    return metric_sample(text, "modelledger_usage_ingested_total", route=route)


def test_metrics_count_usage_stored_not_duplicates(
    client: TestClient[Any], register: Callable[..., dict[str, Any]], alice: Headers
) -> None:
    from tests.api.conftest import usage  # noqa: PLC0415

    model_id = register(alice)["id"]
    before = client.get("/metrics").text
    records = [{**usage(f"m{i}"), "model_id": model_id} for i in range(3)]
    client.post("/api/usage/batch", headers=alice, json={"records": records + records[:1]})
    client.post(f"/api/models/{model_id}/usage", headers=alice, json=usage("single-1"))
    client.post(f"/api/models/{model_id}/usage", headers=alice, json=usage("single-1"))
    after = client.get("/metrics").text
    assert _ingested(after, "batch") - _ingested(before, "batch") == 3
    assert _ingested(after, "single") - _ingested(before, "single") == 1


def test_metrics_count_requests_and_their_latency_per_route_template_and_status(
    client: TestClient[Any], register: Callable[..., dict[str, Any]], alice: Headers
) -> None:
    model_id = register(alice)["id"]
    route = {"method": "GET", "path": "/api/models/{model_id}"}
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.get(f"/api/models/{model_id}", headers=alice).status_code == 200
    assert client.get(f"/api/models/{model_id}").status_code == 401
    missing = client.get(f"/api/models/{uuid.uuid4()}", headers=alice)
    assert missing.status_code == 404
    after = client.get("/metrics").text
    ok, denied = {**route, "status_code": "200"}, {**route, "status_code": "401"}
    not_found = {**route, "status_code": "404"}
    assert (metric_sample(after, "modelledger_requests_total", **not_found)
            - metric_sample(before, "modelledger_requests_total", **not_found)) == 1
    assert (metric_sample(after, "modelledger_requests_total", **ok)
            - metric_sample(before, "modelledger_requests_total", **ok)) == 3
    assert (metric_sample(after, "modelledger_requests_total", **denied)
            - metric_sample(before, "modelledger_requests_total", **denied)) == 1
    assert (metric_sample(after, "modelledger_request_duration_seconds_count", **ok)
            - metric_sample(before, "modelledger_request_duration_seconds_count", **ok)) == 3
    assert 'path="/metrics"' not in after
