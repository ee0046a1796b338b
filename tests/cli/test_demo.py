"""``modelledger demo`` loads a realistic data set through the real services, once."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from api.app import create_app
from api.tokens import TokenVerifier, resolve_secret, user_id_of
from modelledger.cli import cli
from modelledger.demo import demo_tokens, load_demo
from projections.models import queries
from projections.usage import queries as usage_queries

if TYPE_CHECKING:
    from pathlib import Path

    from services.container import Container


def test_demo_data_has_users_models_patterns_and_retired_models(container: Container) -> None:
    result = load_demo(container, days=14, scale=0.05)
    assert len(result.users) >= 3
    assert all(len(user.models) >= 3 for user in result.users)
    assert result.accepted > 0
    assert result.failures > 0
    statuses: dict[str, int] = {}
    requests = 0
    for user in result.users:
        for model in user.models:
            row = queries.get_model(container.store, user.user_id,
                                    result.model_ids[f"{user.subject}/{model.name}"])
            assert row is not None
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        totals, _ = usage_queries.owner_usage(container.store, user.user_id)
        requests += totals.requests
        assert totals.failures > 0
    assert statuses.keys() == {"active", "inactive", "deleted"}
    assert requests == result.accepted  # projections caught up, nothing counted twice


def test_loading_the_demo_twice_adds_nothing(container: Container) -> None:
    first = load_demo(container, days=3, scale=0.05)
    second = load_demo(container, days=3, scale=0.05)
    assert second.accepted == 0
    assert second.duplicates == first.accepted


@pytest.mark.parametrize("backend", ["sqlite"])
def test_demo_command_prints_working_tokens_and_curl_examples(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, container: Container
) -> None:
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["demo", "--days", "2", "--scale", "0.02",
                                      "--base-url", "http://ledger.test"])
    assert result.exit_code == 0, result.output
    tokens = dict(re.findall(r"^export (\w+)_TOKEN=(\S+)", result.output, re.MULTILINE))
    assert set(tokens) == {"ALICE", "BOB", "CAROL", "GATEWAY", "ADMIN"}
    verifier = TokenVerifier(resolve_secret(container.settings))
    alice = verifier.verify(tokens["ALICE"])
    assert alice.user_id == user_id_of("alice")
    assert alice.scopes == {"models"}
    assert verifier.verify(tokens["GATEWAY"]).scopes == {"usage:write"}
    assert "Bearer $ALICE_TOKEN\" 'http://ledger.test/api/models" in result.output


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_demo_tokens_work_against_the_demo_data(container: Container, backend: str) -> None:
    result = load_demo(container, days=1, scale=0.01)
    tokens = {name: {"Authorization": f"Bearer {token}"}
              for name, token, _ in demo_tokens(container.settings, result.users,
                                                timedelta(hours=1))}
    assert set(tokens) == {"ALICE", "BOB", "CAROL", "GATEWAY", "ADMIN"}
    report = {"request_id": "try-1", "response_time_ms": 21.5, "input_bytes": 512,
              "output_bytes": 64, "success": True}
    with TestClient(create_app(container)) as client:
        listed = client.get("/api/models", headers=tokens["ALICE"]).json()
        assert {m["name"] for m in listed["items"]} == {m.name for m in result.users[0].models}
        for key in ("alice/fraud-detector", "bob/sentiment-bert"):  # the gateway: every tenant
            response = client.post(f"/api/models/{result.model_ids[key]}/usage", json=report,
                                   headers=tokens["GATEWAY"])
            assert response.status_code == 201, response.text
        assert client.get("/api/projections", headers=tokens["ADMIN"]).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_demo_serves_a_real_onnx_model_and_prints_a_working_infer_command(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, container: Container
) -> None:
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["demo", "--days", "1", "--scale", "0.01",
                                      "--base-url", "http://ledger.test"])
    assert result.exit_code == 0, result.output
    key = re.search(r"^export ALICE_KEY=(\S+)", result.output, re.MULTILINE)
    command = re.search(r"-d '(?P<body>\{\"id\".*?)' \\\n  'http://ledger.test(?P<path>/v2/[^']+/infer)'",
                        result.output)
    assert key is not None
    assert command is not None, result.output
    with TestClient(create_app(container)) as client:
        answer = client.post(command["path"], content=command["body"],
                             headers={"Authorization": f"Bearer {key[1]}",
                                      "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        [output] = answer.json()["outputs"]
        assert output["name"] == "probability"
        assert 0.0 < output["data"][0] < 1.0
