"""``usage:write`` tokens write only what they name: owners, models, or (asked for) all tenants.

A record for a model the token does not cover answers exactly like a missing model, and leaves
nothing behind: the genuine owner's record with the same request id is accepted later.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from click.testing import CliRunner

from api.tokens import user_id_of
from domain.usage import usage_id
from modelledger.cli import cli
from tests.api.conftest import SECRET, assert_problem, bearer, signed, usage

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from litestar.testing import TestClient

    from services.container import Container

@pytest.fixture
def tenants(register: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Two tenants with a model each: subject, headers and model id."""
    found: dict[str, Any] = {}
    for name in ("alice", "bob"):
        subject = f"{name}-{uuid.uuid4()}"
        headers = bearer(subject)
        found[name] = {"subject": subject, "headers": headers, "model": register(headers)["id"]}
    return found


def _single(client: TestClient[Any], model_id: str, request_id: str, headers: Any) -> Any:
    return client.post(f"/api/models/{model_id}/usage", json=usage(request_id), headers=headers)


def _batch(client: TestClient[Any], model_id: str, request_id: str, headers: Any) -> Any:
    body = {"records": [{**usage(request_id), "model_id": model_id}]}
    response = client.post("/api/usage/batch", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _counted(client: TestClient[Any], container: Container, tenant: dict[str, Any]) -> int:
    container.projector.catch_up("usage")
    detail = client.get(f"/api/models/{tenant['model']}", headers=tenant["headers"]).json()
    return int(detail["request_count"])


class TestScopedServiceTokens:
    def test_a_token_for_an_owner_records_for_that_owner_only(
        self, client: TestClient[Any], tenants: dict[str, Any]
    ) -> None:
        alice, bob = tenants["alice"], tenants["bob"]
        gateway = signed(sub="gateway", scope="usage:write", usage_owners=[alice["subject"]])
        assert _single(client, alice["model"], "a1", gateway).status_code == 201
        refused = _single(client, bob["model"], "b1", gateway)
        nobody = str(uuid.uuid4())
        missing = _single(client, nobody, "b1", gateway)
        assert_problem(refused, 404)
        # Exactly like a missing model: nothing tells the holder that bob's model exists.
        assert refused.json() == {**missing.json(),
                                  "detail": missing.json()["detail"].replace(nobody, bob["model"])}
        result = _batch(client, bob["model"], "b2", gateway)
        assert (result["accepted"], [r["index"] for r in result["rejected"]]) == (0, [0])
        assert "not found" in result["rejected"][0]["error"]

    def test_a_token_for_models_records_for_those_models_only(
        self, client: TestClient[Any], tenants: dict[str, Any]
    ) -> None:
        alice, bob = tenants["alice"], tenants["bob"]
        gateway = signed(sub="gateway", scope="usage:write", usage_models=[bob["model"]])
        assert _single(client, bob["model"], "b1", gateway).status_code == 201
        assert_problem(_single(client, alice["model"], "a1", gateway), 404)

    def test_a_usage_write_token_without_a_grant_records_only_for_its_own_models(
        self, client: TestClient[Any], tenants: dict[str, Any]
    ) -> None:
        gateway = bearer("gateway", "usage:write")
        assert_problem(_single(client, tenants["alice"]["model"], "a1", gateway), 404)
        assert _batch(client, tenants["bob"]["model"], "b1", gateway)["accepted"] == 0

    def test_the_all_tenants_grant_records_for_any_model(
        self, client: TestClient[Any], tenants: dict[str, Any]
    ) -> None:
        gateway = signed(sub="gateway", scope="usage:write", usage_all_tenants=True)
        assert _single(client, tenants["alice"]["model"], "a1", gateway).status_code == 201
        assert _batch(client, tenants["bob"]["model"], "b1", gateway)["accepted"] == 1

    def test_grants_need_the_usage_write_scope(
        self, client: TestClient[Any], tenants: dict[str, Any]
    ) -> None:
        holder = signed(sub="carol", scope="models", usage_all_tenants=True)
        assert_problem(_single(client, tenants["alice"]["model"], "a1", holder), 404)

    def test_owners_are_subjects_of_the_tokens_own_issuer(
        self, client: TestClient[Any], tenants: dict[str, Any]
    ) -> None:
        # alice has no issuer; a token of another issuer naming "alice" names someone else.
        gateway = signed(sub="gateway", iss="https://idp.example", scope="usage:write",
                         usage_owners=[tenants["alice"]["subject"]])
        assert_problem(_single(client, tenants["alice"]["model"], "a1", gateway), 404)

    @pytest.mark.parametrize("claims", [
        {"usage_owners": "alice"}, {"usage_owners": [1]}, {"usage_models": ["not-a-uuid"]},
        {"usage_models": "x"}, {"usage_all_tenants": "yes"},
    ])
    def test_a_malformed_grant_is_refused(
        self, client: TestClient[Any], claims: dict[str, Any]
    ) -> None:
        response = client.post("/api/usage/batch", json={"records": []},
                               headers=signed(sub="gateway", scope="usage:write", **claims))
        assert_problem(response, 401)
        assert next(iter(claims)) in response.json()["detail"]


class TestARefusedRecordClaimsNothing:
    @pytest.mark.parametrize("route", ["single", "batch"])
    def test_the_genuine_record_with_that_request_id_is_accepted_and_counted_once(
        self, client: TestClient[Any], container: Container, tenants: dict[str, Any],
        route: str,
    ) -> None:
        alice, bob = tenants["alice"], tenants["bob"]
        intruder = signed(sub="gateway", scope="usage:write", usage_owners=[bob["subject"]])
        send = _single if route == "single" else _batch
        send(client, alice["model"], "req-1", intruder)  # refused
        genuine = _single(client, alice["model"], "req-1", alice["headers"])
        assert (genuine.status_code, genuine.json()["duplicate"]) == (201, False)
        again = _single(client, alice["model"], "req-1", alice["headers"])
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
        assert _counted(client, container, alice) == 1


def test_each_usage_event_records_its_sender(
    client: TestClient[Any], container: Container, tenants: dict[str, Any]
) -> None:
    alice = tenants["alice"]
    gateway = signed(sub="gateway-7", iss="https://idp.example", scope="usage:write",
                     usage_all_tenants=True)
    _single(client, alice["model"], "by-gateway", gateway)
    _batch(client, alice["model"], "by-owner", alice["headers"])
    model_id = uuid.UUID(alice["model"])
    senders = []
    for request_id in ("by-gateway", "by-owner"):
        [event] = container.usage_log.events.get(usage_id(model_id, request_id))
        senders.append((event.sender, event.sender_issuer))  # type: ignore[attr-defined]
    assert senders == [("gateway-7", "https://idp.example"), (alice["subject"], "")]


class TestTokenCommand:
    @pytest.fixture
    def run(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
        for name in ("MODELLEDGER_DATABASE_URL", "MODELLEDGER_JWT_ISSUER",
                     "MODELLEDGER_JWT_AUDIENCE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("MODELLEDGER_JWT_SECRET", SECRET)

        def invoke(*args: str) -> Any:
            return CliRunner().invoke(cli, ["token", *args])

        return invoke

    @staticmethod
    def _claims(output: str) -> dict[str, Any]:
        return dict(jwt.decode(output.strip(), SECRET, algorithms=["HS256"],
                               options={"verify_aud": False}))

    def test_the_all_tenants_grant_is_issued_only_when_asked(self, run: Any) -> None:
        plain = run("--sub", "gateway", "--scope", "usage:write")
        assert plain.exit_code == 0, plain.output
        assert not {"usage_all_tenants", "usage_owners", "usage_models"} & set(
            self._claims(plain.output))
        granted = run("--sub", "gateway", "--scope", "usage:write", "--all-tenants")
        assert self._claims(granted.output)["usage_all_tenants"] is True

    def test_owner_and_model_grants_are_repeatable(self, run: Any) -> None:
        models = [str(uuid.uuid4()), str(uuid.uuid4())]
        result = run("--sub", "gateway", "--scope", "usage:write", "--for-owner", "alice",
                     "--for-owner", "bob", "--for-model", models[0], "--for-model", models[1])
        assert result.exit_code == 0, result.output
        claims = self._claims(result.output)
        assert (claims["usage_owners"], claims["usage_models"]) == (["alice", "bob"], models)

    @pytest.mark.parametrize("grant", [["--all-tenants"], ["--for-owner", "alice"],
                                       ["--for-model", str(uuid.uuid4())]])
    def test_grants_without_the_usage_write_scope_are_refused(
        self, run: Any, grant: list[str]
    ) -> None:
        result = run("--sub", "gateway", "--scope", "models", *grant)
        assert result.exit_code != 0
        assert "usage:write" in result.output

    def test_a_model_grant_must_be_a_model_id(self, run: Any) -> None:
        result = run("--sub", "gw", "--scope", "usage:write", "--for-model", "nope")
        assert result.exit_code != 0
        assert "--for-model" in result.output

    def test_tokens_carry_the_configured_issuer_and_audience(
        self, run: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MODELLEDGER_JWT_ISSUER", "https://ledger.example")
        monkeypatch.setenv("MODELLEDGER_JWT_AUDIENCE", "modelledger")
        claims = self._claims(run("--sub", "alice").output)
        assert (claims["iss"], claims["aud"]) == ("https://ledger.example", "modelledger")

    def test_an_owner_grant_from_the_command_lets_the_gateway_record_for_that_owner(
        self, run: Any, client: TestClient[Any], tenants: dict[str, Any]
    ) -> None:
        alice, bob = tenants["alice"], tenants["bob"]
        result = run("--sub", "gateway", "--scope", "usage:write", "--for-owner",
                     alice["subject"])
        gateway = {"Authorization": f"Bearer {result.output.strip()}"}
        assert _single(client, alice["model"], "g1", gateway).status_code == 201
        assert_problem(_single(client, bob["model"], "g1", gateway), 404)
        assert user_id_of(alice["subject"]) != user_id_of(bob["subject"])
