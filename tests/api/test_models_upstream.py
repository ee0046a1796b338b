"""A model's upstream through ``/api/models`` (SQLite and PostgreSQL): given at registration
or by ``PUT``, only on the operator's hosts, shown in the model and its audit trail; and the
ONNX check of an uploaded artifact."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.api.conftest import MAX_UPLOAD, SECRET, Headers, assert_problem
from tests.conftest import make_settings
from tests.onnx_models import identity, logistic_regression

if TYPE_CHECKING:
    from litestar.testing import TestClient

    from config.settings import Settings
    from services.container import Container

UPSTREAM = {"url": "http://mlserver.internal:8080", "model": "iris"}


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(backend, tmp_path, request, jwt_secret=SECRET,
                         max_upload_bytes=MAX_UPLOAD, upstream_hosts="mlserver.internal")


def registered(client: TestClient[Any], headers: Headers, **body: Any) -> dict[str, Any]:
    response = client.post("/api/models", json={"name": f"m-{uuid.uuid4().hex[:6]}", **body},
                           headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestUpstream:
    def test_an_upstream_given_at_registration_is_shown_in_detail_list_and_history(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        model = registered(client, alice, framework="sklearn", upstream=UPSTREAM)
        assert (model["upstream"], model["version"]) == (UPSTREAM, 2)
        assert client.get(f"/api/models/{model['id']}", headers=alice).json()["upstream"] == (
            UPSTREAM
        )
        assert client.get("/api/models", headers=alice).json()["items"][0]["upstream"] == (
            UPSTREAM
        )
        history = client.get(f"/api/models/{model['id']}/history", headers=alice).json()
        assert [(e["type"], e["changes"]) for e in history["items"]][1] == (
            "UpstreamChanged", {"upstream": UPSTREAM}
        )

    def test_a_model_without_upstream_shows_null(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        assert registered(client, alice)["upstream"] is None

    def test_put_sets_keeps_and_removes_the_upstream(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        path = f"/api/models/{registered(client, alice)['id']}"
        assert client.put(path, json={"upstream": UPSTREAM}, headers=alice).json()[
            "upstream"] == UPSTREAM
        kept = client.put(path, json={"description": "same upstream"}, headers=alice).json()
        assert kept["upstream"] == UPSTREAM
        removed = client.put(path, json={"upstream": None}, headers=alice).json()
        assert removed["upstream"] is None
        version_with_it = removed["version"] - 1
        then = client.get(path, params={"version": version_with_it}, headers=alice).json()
        assert then["upstream"] == UPSTREAM

    @pytest.mark.parametrize(("upstream", "name"), [
        ({"url": "http://elsewhere:8080", "model": "iris"}, "upstream"),
        ({"url": "http://169.254.169.254/latest", "model": "iris"}, "upstream"),
    ])
    def test_a_host_the_operator_did_not_list_answers_422(
        self, client: TestClient[Any], alice: Headers, upstream: dict[str, str], name: str
    ) -> None:
        response = client.post("/api/models", json={"name": "m", "upstream": upstream},
                               headers=alice)
        body = assert_problem(response, 422, name)
        assert "MODELLEDGER_UPSTREAM_HOSTS" in body["detail"]
        assert client.get("/api/models", headers=alice).json()["total"] == 0
        path = f"/api/models/{registered(client, alice)['id']}"
        assert_problem(client.put(path, json={"upstream": upstream}, headers=alice), 422, name)

    @pytest.mark.parametrize(("upstream", "name"), [
        ({"url": "ftp://mlserver.internal", "model": "iris"}, "upstream.url"),
        ({"url": "http://u:p@mlserver.internal", "model": "iris"}, "upstream.url"),
        ({"url": "http://mlserver.internal/?q=1", "model": "iris"}, "upstream.url"),
        ({"url": "http://mlserver.internal", "model": "a/b"}, "upstream.model"),
        ({"url": "http://mlserver.internal"}, "upstream"),
        ({"url": "http://mlserver.internal", "model": "m", "x": 1}, "upstream.x"),
    ])
    def test_a_malformed_upstream_is_a_problem_naming_its_part(
        self, client: TestClient[Any], alice: Headers, upstream: dict[str, str], name: str
    ) -> None:
        response = client.post("/api/models", json={"name": "m", "upstream": upstream},
                               headers=alice)
        assert response.status_code in {400, 422}, response.text
        assert_problem(response, response.status_code, name)

    def test_a_form_registration_takes_no_upstream(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        response = client.post("/api/models", data={"name": "m", "upstream": "x"},
                               files={"file": ("w.pt", b"weights")}, headers=alice)
        assert_problem(response, 422, "upstream")


class TestOnnxUpload:
    @pytest.mark.parametrize(("framework", "filename"), [
        ("onnx", "model.bin"), ("Onnx", "model"), ("pytorch", "model.onnx"),
    ])
    def test_a_file_onnxruntime_cannot_load_answers_422_naming_file_and_keeps_nothing(
        self, client: TestClient[Any], alice: Headers, container: Container, framework: str,
        filename: str,
    ) -> None:
        response = client.post(
            "/api/models", data={"name": "broken", "framework": framework},
            files={"file": (filename, b"\x08\x07 not protobuf")}, headers=alice,
        )
        body = assert_problem(response, 422, "file")
        assert str(container.settings.data_dir) not in response.text
        assert "Traceback" not in body["detail"]
        root = Path(container.settings.data_dir) / "artifacts"
        assert [p for p in root.rglob("*") if p.is_file()] == []
        assert client.get("/api/models", headers=alice).json()["total"] == 0

    @pytest.mark.parametrize("content", [logistic_regression(), identity()])
    def test_a_real_onnx_model_is_stored(
        self, client: TestClient[Any], alice: Headers, content: bytes
    ) -> None:
        response = client.post(
            "/api/models", data={"name": "real", "framework": "onnx"},
            files={"file": ("model.onnx", content)}, headers=alice,
        )
        assert response.status_code == 201, response.text
        assert response.json()["artifact"]["size_bytes"] == len(content)
