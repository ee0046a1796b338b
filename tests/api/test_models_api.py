"""``/api/models``: register, list, read, update, delete and history, through the real app."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.api.conftest import MAX_UPLOAD, Headers, assert_problem
from tests.onnx_models import logistic_regression

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from services.container import Container


class TestRegister:
    def test_json_registration_answers_201_with_location_and_etag(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        response = client.post("/api/models", json={"name": "resnet", "description": "d",
                                                    "framework": "pytorch"}, headers=alice)
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/api/models/{body['id']}"
        assert response.headers["etag"] == '"1"'
        assert body["status"] == "active"
        assert body["endpoint"]["active"] is True
        assert body["endpoint"]["url"].endswith(f"/v2/models/{body['id']}")
        assert body["artifact"] is None
        assert body["request_count"] == 0

    def test_multipart_upload_stores_the_artifact_with_sha256_and_size(
        self, client: TestClient[Any], alice: Headers, container: Container
    ) -> None:
        content = logistic_regression()
        response = client.post(
            "/api/models", data={"name": "with-file", "framework": "onnx"},
            files={"file": ("../../model.onnx", content, "application/octet-stream")},
            headers=alice,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["artifact"] == {"filename": "model.onnx", "size_bytes": len(content),
                                    "sha256": hashlib.sha256(content).hexdigest()}
        stored = Path(container.settings.data_dir) / "artifacts" / body["id"] / "model.onnx"
        assert stored.read_bytes() == content

    def test_upload_over_the_maximum_answers_413_and_keeps_nothing(
        self, client: TestClient[Any], alice: Headers, container: Container
    ) -> None:
        response = client.post("/api/models", data={"name": "too-big"},
                               files={"file": ("big.bin", b"x" * (MAX_UPLOAD + 1))}, headers=alice)
        assert_problem(response, 413)
        root = Path(container.settings.data_dir) / "artifacts"
        assert [p for p in root.rglob("*") if p.is_file()] == []

    def test_taken_name_answers_409(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        register(alice, "same")
        assert_problem(client.post("/api/models", json={"name": "same"}, headers=alice), 409)

    def test_invalid_name_answers_422_naming_it(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        assert_problem(client.post("/api/models", json={"name": " "}, headers=alice), 422, "name")

    def test_unknown_field_answers_422_naming_it(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        response = client.post("/api/models", json={"name": "x", "owner": "me"}, headers=alice)
        assert_problem(response, 422, "owner")

    def test_malformed_json_answers_400(self, client: TestClient[Any], alice: Headers) -> None:
        response = client.post("/api/models", content=b'{"name": ',
                               headers={**alice, "content-type": "application/json"})
        assert_problem(response, 400, "body")


class TestList:
    def test_lists_only_the_callers_models_with_total(
        self,
        client: TestClient[Any],
        alice: Headers,
        bob: Headers,
        register: Callable[..., dict[str, Any]],
    ) -> None:
        register(alice, "a1")
        register(alice, "a2")
        register(bob, "b1")
        page = client.get("/api/models", headers=alice).json()
        assert [m["name"] for m in page["items"]] == ["a1", "a2"]
        assert page["total"] == 2
        assert page["next_cursor"] is None

    def test_cursor_pages_through_every_model_once(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        names = {register(alice, f"m{i:02}")["name"] for i in range(7)}
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, "sort": "-name"}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/models", params=params, headers=alice).json()
            seen += [m["name"] for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(names, reverse=True)

    def test_filters_by_name_and_status_and_hides_deleted(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        keep = register(alice, "Vision-A")
        register(alice, "text-b")
        gone = register(alice, "vision-c")
        client.put(f"/api/models/{keep['id']}", json={"status": "inactive"}, headers=alice)
        client.delete(f"/api/models/{gone['id']}", headers=alice)

        def names(**p: Any) -> list[str]:
            return [m["name"] for m in client.get(
                "/api/models", params=p, headers=alice).json()["items"]]

        assert names(q="vision") == ["Vision-A"]
        assert names(q="vision", include_deleted=True) == ["Vision-A", "vision-c"]
        assert names(status="inactive") == ["Vision-A"]
        assert names(status="deleted") == ["vision-c"]

    def test_invalid_cursor_answers_400_naming_cursor(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        assert_problem(client.get("/api/models?cursor=bm9wZQ", headers=alice), 400, "cursor")

    def test_limit_above_100_answers_400(self, client: TestClient[Any], alice: Headers) -> None:
        assert_problem(client.get("/api/models?limit=101", headers=alice), 400)


class TestReadAndUpdate:
    def test_update_then_read_shows_the_change_at_once(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice, "before")
        response = client.put(f"/api/models/{model['id']}",
                              json={"name": "after", "description": "new"}, headers=alice)
        assert response.status_code == 200
        assert response.headers["etag"] == '"2"'
        detail = client.get(f"/api/models/{model['id']}", headers=alice)
        assert detail.json()["name"] == "after"
        assert detail.headers["etag"] == '"2"'
        listed = client.get("/api/models", headers=alice).json()["items"]
        assert [m["name"] for m in listed] == ["after"]

    def test_stale_if_match_answers_412(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        url = f"/api/models/{model['id']}"
        fresh = client.put(url, json={"description": "x"}, headers={**alice, "If-Match": '"1"'})
        assert fresh.status_code == 200
        assert_problem(client.put(url, json={"description": "y"},
                                  headers={**alice, "If-Match": '"1"'}), 412)

    def test_fields_other_than_name_description_status_answer_422(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        response = client.put(f"/api/models/{model['id']}", json={"framework": "tf"}, headers=alice)
        assert_problem(response, 422, "framework")

    def test_deactivation_turns_the_endpoint_off(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        body = client.put(f"/api/models/{model['id']}", json={"status": "inactive"},
                          headers=alice).json()
        assert body["status"] == "inactive"
        assert body["endpoint"]["active"] is False

    def test_detail_carries_usage_summary(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        usage = client.get(f"/api/models/{model['id']}", headers=alice).json()["usage"]
        assert usage["total_requests"] == 0
        assert usage["p99_response_ms"] is None

    def test_version_and_as_of_return_the_model_as_it_was(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice, "v1-name")
        moment = datetime.now(UTC).isoformat()
        time.sleep(0.01)
        client.put(f"/api/models/{model['id']}", json={"name": "v2-name"}, headers=alice)
        url = f"/api/models/{model['id']}"
        old = client.get(url, params={"version": 1}, headers=alice)
        assert (old.json()["name"], old.headers["etag"]) == ("v1-name", '"1"')
        assert client.get(url, params={"as_of": moment}, headers=alice).json()["name"] == "v1-name"
        assert_problem(client.get(url, params={"version": 99}, headers=alice), 404)
        before = {"as_of": "2000-01-01T00:00:00Z"}
        assert_problem(client.get(url, params=before, headers=alice), 404)

    def test_bad_uuid_answers_400_naming_model_id(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        assert_problem(client.get("/api/models/not-a-uuid", headers=alice), 400, "model_id")


class TestDeleteAndHistory:
    def test_delete_is_soft_repeatable_and_removes_the_artifact(
        self, client: TestClient[Any], alice: Headers, container: Container
    ) -> None:
        created = client.post("/api/models", data={"name": "doomed"},
                              files={"file": ("w.bin", b"123")}, headers=alice).json()
        url = f"/api/models/{created['id']}"
        assert client.delete(url, headers=alice).status_code == 204
        assert client.delete(url, headers=alice).status_code == 204
        body = client.get(url, headers=alice).json()
        assert body["status"] == "deleted"
        assert body["endpoint"]["active"] is False
        assert body["artifact"] is None
        path = Path(container.settings.data_dir) / "artifacts" / created["id"] / "w.bin"
        assert not path.exists()
        types = [e["type"] for e in client.get(f"{url}/history", headers=alice).json()["items"]]
        assert types == ["Registered", "ArtifactStored", "Deleted", "EndpointDeactivated",
                         "VersionRemoved"]

    def test_deleted_model_cannot_be_renamed(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        client.delete(f"/api/models/{model['id']}", headers=alice)
        assert_problem(client.put(f"/api/models/{model['id']}", json={"name": "z"},
                                  headers=alice), 409)

    def test_history_pages_with_actor_changes_and_versions(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice, "h0")
        for i in range(1, 4):
            client.put(f"/api/models/{model['id']}", json={"name": f"h{i}"},
                       headers={**alice, "X-Correlation-ID": f"corr-{i}"})
        url = f"/api/models/{model['id']}/history"
        first = client.get(url, params={"limit": 2}, headers=alice).json()
        second = client.get(url, params={"limit": 2, "cursor": first["next_cursor"]},
                            headers=alice).json()
        entries = first["items"] + second["items"]
        assert [e["version"] for e in entries] == [1, 2, 3, 4]
        assert first["total"] == 4
        assert second["next_cursor"] is None
        assert entries[1]["changes"] == {"name": {"old": "h0", "new": "h1"}}
        assert entries[1]["correlation_id"] == "corr-1"
        assert entries[1]["actor"] == entries[0]["actor"]


def test_ownership_is_checked_before_history(
    client: TestClient[Any], alice: Headers, bob: Headers, register: Callable[..., dict[str, Any]]
) -> None:
    model = register(alice)
    assert_problem(client.get(f"/api/models/{model['id']}/history", headers=bob), 404)
