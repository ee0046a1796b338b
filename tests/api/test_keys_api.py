"""``/api/keys`` through the real app (SQLite and PostgreSQL): the key's text once, the
caller's keys only, revocation, and the problems of bad input."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from domain.api_key import parse_key
from domain.usage import record_usage
from tests.api.conftest import Headers, assert_problem, bearer
from tests.helpers import T0

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from services.container import Container


def create(client: TestClient[Any], headers: Headers, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "ci")
    body.setdefault("models", None)
    response = client.post("/api/keys", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestCreate:
    def test_the_answer_holds_the_keys_text_once_and_no_cache_keeps_it(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        response = client.post(
            "/api/keys", json={"name": "ci", "models": [model["id"]]}, headers=alice
        )
        assert response.status_code == 201, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert sorted(body) == ["created_at", "id", "key", "last_used_at", "models", "name"]
        assert (body["name"], body["models"], body["last_used_at"]) == ("ci", [model["id"]], None)
        parsed = parse_key(body["key"])
        assert parsed is not None
        assert str(parsed[0]) == body["id"]
        listed = client.get("/api/keys", headers=alice)
        assert body["key"] not in listed.text
        assert parsed[1] not in listed.text

    def test_the_keys_text_never_reaches_the_log(
        self, client: TestClient[Any], alice: Headers, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.DEBUG):
            key = create(client, alice)["key"]
            client.get("/api/keys", headers=alice)
        assert parse_key(key)[1] not in caplog.text  # type: ignore[index]

    def test_another_users_model_answers_404_like_a_missing_one(
        self,
        client: TestClient[Any],
        alice: Headers,
        bob: Headers,
        register: Callable[..., dict[str, Any]],
    ) -> None:
        theirs = register(bob)["id"]
        for model_id in (theirs, str(uuid.uuid4())):
            response = client.post(
                "/api/keys", json={"name": "ci", "models": [model_id]}, headers=alice
            )
            body = assert_problem(response, 404)
            assert theirs not in response.text
            assert body["detail"] == "model not found"
        assert client.get("/api/keys", headers=alice).json() == {"items": []}

    @pytest.mark.parametrize(("body", "status", "name"), [
        ({"name": " ", "models": None}, 422, "name"),
        ({"name": "x" * 201, "models": None}, 422, "name"),
        ({"name": "a\x00b", "models": None}, 422, "name"),
        ({"name": "ci"}, 400, "body"),  # models is required: null says "all of them"
        ({"name": "ci", "models": []}, 400, "models"),
        ({"name": "ci", "models": ["not-a-uuid"]}, 400, "models[0]"),
        ({"name": "ci", "models": None, "scope": "all"}, 422, "scope"),
    ])
    def test_bad_input_is_a_problem_naming_the_field(
        self, client: TestClient[Any], alice: Headers, body: dict[str, Any], status: int,
        name: str,
    ) -> None:
        assert_problem(client.post("/api/keys", json=body, headers=alice), status, name)

    def test_the_101st_live_key_answers_409(
        self, client: TestClient[Any], alice: Headers, bob: Headers
    ) -> None:
        ids = [create(client, alice, name=f"k{i}")["id"] for i in range(100)]
        body = assert_problem(client.post("/api/keys", json={"name": "x", "models": None},
                                          headers=alice), 409)
        assert "at most 100" in body["detail"]
        create(client, bob)  # a limit per owner
        assert client.delete(f"/api/keys/{ids[0]}", headers=alice).status_code == 204
        create(client, alice, name="in its place")
        assert len(client.get("/api/keys", headers=alice).json()["items"]) == 100


class TestListAndRevoke:
    def test_the_list_holds_the_callers_live_keys_with_their_usage(
        self,
        client: TestClient[Any],
        alice: Headers,
        bob: Headers,
        container: Container,
        register: Callable[..., dict[str, Any]],
    ) -> None:
        model = register(alice)
        used = create(client, alice, name="used")
        gone = create(client, alice, name="gone")
        create(client, bob, name="bob's")
        container.usage_log.record([record_usage(
            model_id=uuid.UUID(model["id"]), owner_id=_owner(container, used), request_id="r1",
            occurred_at=T0, response_time_ms=2.0, input_bytes=1, output_bytes=1, success=True,
            api_key_id=used["id"],
        )])
        container.projector.catch_up("usage")
        assert client.delete(f"/api/keys/{gone['id']}", headers=alice).status_code == 204
        items = client.get("/api/keys", headers=alice).json()["items"]
        assert items == [{
            "id": used["id"], "name": "used", "models": None, "created_at": used["created_at"],
            "last_used_at": T0.isoformat().replace("+00:00", "Z"), "requests": 1,
        }]

    def test_revoking_twice_answers_204_and_the_key_stops_working(
        self, client: TestClient[Any], alice: Headers, container: Container
    ) -> None:
        key = create(client, alice)
        assert container.keys.authenticate(key["key"]) is not None
        for _ in range(2):
            assert client.delete(f"/api/keys/{key['id']}", headers=alice).status_code == 204
        assert container.keys.authenticate(key["key"]) is None

    def test_another_users_key_answers_404_like_a_missing_one(
        self, client: TestClient[Any], alice: Headers, bob: Headers, container: Container
    ) -> None:
        theirs = create(client, bob)
        for key_id in (theirs["id"], str(uuid.uuid4())):
            body = assert_problem(client.delete(f"/api/keys/{key_id}", headers=alice), 404)
            assert body["detail"] == "API key not found"
        assert container.keys.authenticate(theirs["key"]) is not None

    def test_a_malformed_key_id_answers_400(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        assert_problem(client.delete("/api/keys/not-a-uuid", headers=alice), 400)


class TestAccess:
    @pytest.mark.parametrize(("method", "path"), [
        ("POST", "/api/keys"), ("GET", "/api/keys"),
        ("DELETE", "/api/keys/00000000-0000-4000-8000-000000000001"),  # fixed: xdist compares ids
    ])
    def test_every_route_needs_a_token_with_the_models_scope(
        self, client: TestClient[Any], method: str, path: str
    ) -> None:
        body = {"name": "ci", "models": None} if method == "POST" else None
        assert_problem(client.request(method, path, json=body), 401)
        usage_only = bearer("svc", "usage:write")
        assert_problem(client.request(method, path, json=body, headers=usage_only), 403)

    def test_a_key_is_no_login_token_for_the_api(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        key = create(client, alice)["key"]
        assert_problem(client.get("/api/keys", headers={"Authorization": f"Bearer {key}"}), 401)


def _owner(container: Container, key: dict[str, Any]) -> uuid.UUID:
    grant = container.keys.authenticate(key["key"])
    assert grant is not None
    return grant.owner_id
