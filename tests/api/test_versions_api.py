"""Model versions through the real app: upload, list, serve (one version or a split), roll back,
remove, usage per version, and the rollout comparison; another user's model is 404 everywhere."""

from __future__ import annotations

import hashlib
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from domain import latency
from tests.api.conftest import Headers, assert_problem, usage
from tests.onnx_models import logistic_regression

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from services.container import Container


def upload(
    client: TestClient[Any], headers: Headers, model_id: str, content: bytes = b"weights-2",
    *, name: str = "w2.bin", notes: str | None = None,
) -> Any:
    data = {} if notes is None else {"notes": notes}
    return client.post(f"/api/models/{model_id}/versions", data=data,
                       files={"file": (name, content)}, headers=headers)


@pytest.fixture
def model(client: TestClient[Any], alice: Headers) -> dict[str, Any]:
    """Alice's model with version 1 uploaded at registration."""
    response = client.post("/api/models", data={"name": "ranker", "framework": "pytorch"},
                           files={"file": ("w1.bin", b"weights-1")}, headers=alice)
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestUpload:
    def test_a_new_version_is_numbered_hashed_and_does_not_serve_until_promoted(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
        container: Container,
    ) -> None:
        assert (model["latest_version"], model["serving"]) == (1, [{"version": 1, "weight": 100}])
        response = upload(client, alice, model["id"], b"weights-2", notes="retrained")
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == f"/api/models/{model['id']}/versions/2"
        assert (body["number"], body["filename"], body["size_bytes"], body["notes"],
                body["serving_weight"], body["removed_at"]) == (2, "w2.bin", 9, "retrained", 0,
                                                                 None)
        assert body["sha256"] == hashlib.sha256(b"weights-2").hexdigest()
        assert body["created_by"].startswith("alice-")
        stored = Path(container.settings.data_dir) / "artifacts" / model["id"] / "v2" / "w2.bin"
        assert stored.read_bytes() == b"weights-2"
        detail = client.get(f"/api/models/{model['id']}", headers=alice).json()
        assert (detail["latest_version"], detail["serving"]) == (
            2, [{"version": 1, "weight": 100}])
        assert detail["artifact"]["filename"] == "w2.bin"  # the latest version's file

    def test_the_first_version_of_a_model_registered_without_a_file_serves(
        self, client: TestClient[Any], alice: Headers,
        register: Callable[..., dict[str, Any]],
    ) -> None:
        bare = register(alice)
        assert (bare["latest_version"], bare["serving"]) == (0, [])
        body = upload(client, alice, bare["id"]).json()
        assert (body["number"], body["serving_weight"]) == (1, 100)

    def test_versions_are_listed_oldest_first_with_their_share_and_keyset_pages(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
    ) -> None:
        for i in (2, 3):
            assert upload(client, alice, model["id"], f"w{i}".encode()).status_code == 201
        url = f"/api/models/{model['id']}/versions"
        first = client.get(url, params={"limit": 2}, headers=alice).json()
        assert [v["number"] for v in first["items"]] == [1, 2]
        assert [v["serving_weight"] for v in first["items"]] == [100, 0]
        assert (first["latest_version"], first["serving"]) == (3, [{"version": 1, "weight": 100}])
        rest = client.get(url, params={"limit": 2, "cursor": first["next_cursor"]},
                          headers=alice).json()
        assert ([v["number"] for v in rest["items"]], rest["next_cursor"]) == ([3], None)
        assert client.get(f"{url}/3", headers=alice).json()["number"] == 3
        assert_problem(client.get(f"{url}/4", headers=alice), 404)

    def test_an_onnx_version_that_onnxruntime_cannot_load_is_refused_naming_file(
        self, client: TestClient[Any], alice: Headers,
    ) -> None:
        created = client.post(
            "/api/models", data={"name": "lr", "framework": "onnx"},
            files={"file": ("lr.onnx", logistic_regression())}, headers=alice,
        ).json()
        assert_problem(upload(client, alice, created["id"], b"junk", name="v2.onnx"), 422, "file")
        assert upload(client, alice, created["id"], logistic_regression(),
                      name="v2.onnx").status_code == 201

    def test_an_upload_without_a_file_or_with_an_unknown_field_answers_4xx(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
    ) -> None:
        url = f"/api/models/{model['id']}/versions"
        assert_problem(client.post(url, data={"notes": "x"}, files={"other": ("a", b"1")},
                                   headers=alice), 422)
        assert_problem(client.post(url, json={"notes": "x"}, headers=alice), 415)


class TestServing:
    def test_promote_split_and_roll_back_are_changes_in_the_audit_trail(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
    ) -> None:
        url = f"/api/models/{model['id']}"
        upload(client, alice, model["id"])
        promoted = client.put(url, json={"serving": {"version": 2}}, headers=alice)
        assert promoted.json()["serving"] == [{"version": 2, "weight": 100}]
        split = [{"version": 2, "weight": 10}, {"version": 1, "weight": 90}]
        assert client.put(url, json={"serving": split}, headers=alice).json()["serving"] == split
        back = client.put(url, json={"serving": {"version": 1}}, headers=alice).json()
        assert back["serving"] == [{"version": 1, "weight": 100}]
        trail = client.get(f"{url}/history", headers=alice).json()["items"]
        changes = [e["changes"] for e in trail if e["type"] == "ServingChanged"]
        assert changes == [
            {"previous": [[1, 100]], "serving": [[2, 100]]},
            {"previous": [[2, 100]], "serving": [[2, 10], [1, 90]]},
            {"previous": [[2, 10], [1, 90]], "serving": [[1, 100]]},
        ]
        assert {e["actor"] for e in trail if e["type"] == "ServingChanged"} == {
            trail[0]["actor"]}
        # Time travel: the model as it was before the rollback.
        before = trail[-1]["version"] - 1
        past = client.get(url, params={"version": before}, headers=alice).json()
        assert past["serving"] == split

    @pytest.mark.parametrize(("serving", "why"), [
        ([{"version": 1, "weight": 50}, {"version": 2, "weight": 40}], "sum to 100"),
        ([{"version": 1, "weight": 50}, {"version": 1, "weight": 50}], "more than once"),
        ({"version": 9}, "does not exist"),
    ])
    def test_a_split_that_breaks_a_rule_answers_422_naming_serving(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
        serving: Any, why: str,
    ) -> None:
        upload(client, alice, model["id"])
        response = client.put(f"/api/models/{model['id']}", json={"serving": serving},
                              headers=alice)
        assert why in assert_problem(response, 422, "serving")["detail"]

    def test_a_weight_out_of_range_is_refused_by_the_schema(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
    ) -> None:
        response = client.put(f"/api/models/{model['id']}",
                              json={"serving": [{"version": 1, "weight": 101}]}, headers=alice)
        assert response.status_code in {400, 422}
        assert response.headers["content-type"].startswith("application/problem+json")


class TestRemoval:
    def test_the_serving_version_cannot_be_removed_and_another_can(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
        container: Container,
    ) -> None:
        upload(client, alice, model["id"])
        versions = f"/api/models/{model['id']}/versions"
        body = assert_problem(client.delete(f"{versions}/1", headers=alice), 409)
        assert "version 1" in body["detail"]
        assert client.delete(f"{versions}/2", headers=alice).status_code == 204
        assert client.delete(f"{versions}/2", headers=alice).status_code == 204  # again: nothing
        removed = client.get(f"{versions}/2", headers=alice).json()
        assert removed["removed_at"] is not None
        assert not (Path(container.settings.data_dir) / "artifacts" / model["id"] / "v2").exists()
        assert_problem(client.put(f"/api/models/{model['id']}", json={"serving": {"version": 2}},
                                  headers=alice), 422, "serving")
        assert_problem(client.delete(f"{versions}/7", headers=alice), 404)
        trail = client.get(f"/api/models/{model['id']}/history", headers=alice).json()["items"]
        assert [e["changes"]["number"] for e in trail if e["type"] == "VersionRemoved"] == [2]

    def test_deleting_the_model_removes_every_versions_file(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
        container: Container,
    ) -> None:
        upload(client, alice, model["id"])
        assert client.delete(f"/api/models/{model['id']}", headers=alice).status_code == 204
        folder = Path(container.settings.data_dir) / "artifacts" / model["id"]
        assert not folder.exists()
        listed = client.get(f"/api/models/{model['id']}/versions", headers=alice).json()
        assert all(v["removed_at"] is not None for v in listed["items"])
        assert_problem(upload(client, alice, model["id"]), 409)


class TestUsagePerVersion:
    def test_reported_usage_names_its_version_and_is_read_per_version(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
        container: Container,
    ) -> None:
        upload(client, alice, model["id"])
        url = f"/api/models/{model['id']}/usage"
        now = datetime.now(UTC).replace(microsecond=0)
        sent = {1: [10.0, 20.0, 30.0], 2: [100.0, 200.0]}
        for version, times in sent.items():
            for i, ms in enumerate(times):
                response = client.post(url, json=usage(
                    f"v{version}-{i}", response_time_ms=ms, model_version=version,
                    occurred_at=(now - timedelta(minutes=5)).isoformat()), headers=alice)
                assert response.status_code == 201, response.text
        assert client.post(url, json=usage("old", occurred_at=now.isoformat()),
                           headers=alice).status_code == 201  # no version given: version 1
        container.projector.catch_up("usage")
        window = {"window": "day", "from": (now - timedelta(days=1)).isoformat(),
                  "to": (now + timedelta(hours=1)).isoformat()}
        v2 = client.get(url, params={**window, "version": 2}, headers=alice).json()
        assert v2["version"] == 2
        assert sum(b["requests"] for b in v2["buckets"]) == 2
        grouped = client.get(url, params={**window, "group_by": "version"}, headers=alice).json()
        assert {g["version"]: sum(b["requests"] for b in g["buckets"])
                for g in grouped["by_version"]} == {1: 4, 2: 2}
        assert sum(b["requests"] for b in grouped["buckets"]) == 6
        detail = client.get(f"/api/models/{model['id']}", headers=alice).json()
        by_version = {v["version"]: v["usage"] for v in detail["usage_by_version"]}
        assert by_version[1]["total_requests"] == 4
        assert by_version[2]["total_requests"] == 2
        assert by_version[2]["max_response_ms"] == 200.0
        assert by_version[2]["avg_response_ms"] == 150.0

    def test_usage_for_a_version_the_model_does_not_have_answers_422(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
    ) -> None:
        response = client.post(f"/api/models/{model['id']}/usage",
                               json=usage("x", model_version=5), headers=alice)
        assert_problem(response, 422)


def _record(
    client: TestClient[Any], headers: Headers, model_id: str, version: int, times: list[float],
    *, failures: int, at: datetime, container: Container,
) -> None:
    records = [
        {"model_id": model_id, "request_id": f"v{version}-{i}", "response_time_ms": ms,
         "input_bytes": 1, "output_bytes": 1, "success": i >= failures,
         "occurred_at": (at + timedelta(seconds=i)).isoformat(), "model_version": version}
        for i, ms in enumerate(times)
    ]
    result = client.post("/api/usage/batch", json={"records": records}, headers=headers).json()
    assert result["accepted"] == len(records), result
    container.projector.catch_up("usage")


class TestCompare:
    def test_a_slower_failing_version_is_judged_worse_with_figures_equal_to_a_recount(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
        container: Container,
    ) -> None:
        upload(client, alice, model["id"])
        rng = random.Random(3)
        at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        fast = [rng.uniform(10, 20) for _ in range(400)]
        slow = [rng.uniform(30, 60) for _ in range(400)]
        _record(client, alice, model["id"], 1, fast, failures=4, at=at, container=container)
        _record(client, alice, model["id"], 2, slow, failures=40, at=at, container=container)
        body = client.get(f"/api/models/{model['id']}/versions/compare",
                          params={"a": 1, "b": 2, "from": (at - timedelta(hours=1)).isoformat(),
                                  "to": (at + timedelta(hours=2)).isoformat()},
                          headers=alice).json()
        a, b = body["a"], body["b"]
        assert (a["requests"], a["failures"], b["requests"], b["failures"]) == (400, 4, 400, 40)
        assert b["error_rate"] == pytest.approx(0.1)
        assert body["difference"]["error_rate"] == pytest.approx(0.09)
        for figures, times in ((a, fast), (b, slow)):
            exact = sorted(times)[math.ceil(0.95 * len(times)) - 1]
            assert abs(figures["p95_response_ms"] - exact) <= latency.RELATIVE_ERROR * exact + 1e-3
        verdict = body["verdict"]
        assert (verdict["b_worse"], verdict["error_rate_worse"], verdict["p95_worse"]) == (
            True, True, True)
        assert verdict["error_rate_z"] > 1.645
        assert "z-test" in verdict["method"]

    def test_equal_versions_are_not_worse_and_too_little_traffic_has_no_verdict(
        self, client: TestClient[Any], alice: Headers, model: dict[str, Any],
        container: Container,
    ) -> None:
        upload(client, alice, model["id"])
        at = datetime.now(UTC) - timedelta(hours=1)
        same = [15.0] * 100
        _record(client, alice, model["id"], 1, same, failures=2, at=at, container=container)
        _record(client, alice, model["id"], 2, same, failures=2, at=at, container=container)
        url = f"/api/models/{model['id']}/versions/compare"
        equal = client.get(url, params={"a": 1, "b": 2}, headers=alice).json()["verdict"]
        assert (equal["b_worse"], equal["error_rate_worse"], equal["p95_worse"]) == (
            False, False, False)
        empty = client.get(url, params={"a": 1, "b": 3}, headers=alice).json()
        assert empty["b"]["requests"] == 0
        assert empty["verdict"]["b_worse"] is None
        assert_problem(client.get(url, params={"a": 1}, headers=alice), 400)


def test_another_users_model_answers_404_on_every_version_route(
    client: TestClient[Any], alice: Headers, bob: Headers, model: dict[str, Any],
) -> None:
    upload(client, alice, model["id"])
    base = f"/api/models/{model['id']}"
    for response in (
        upload(client, bob, model["id"]),
        client.get(f"{base}/versions", headers=bob),
        client.get(f"{base}/versions/1", headers=bob),
        client.delete(f"{base}/versions/2", headers=bob),
        client.get(f"{base}/versions/compare", params={"a": 1, "b": 2}, headers=bob),
        client.get(f"{base}/usage", params={"version": 1}, headers=bob),
        client.get(f"{base}/usage", params={"group_by": "version"}, headers=bob),
        client.put(base, json={"serving": {"version": 2}}, headers=bob),
    ):
        assert_problem(response, 404)
    assert client.get(f"{base}/versions/2", headers=alice).json()["removed_at"] is None
    assert client.get(base, headers=alice).json()["serving"] == [{"version": 1, "weight": 100}]
