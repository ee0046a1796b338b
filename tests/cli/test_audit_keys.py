"""`modelledger audit --key KEY_ID`: an API key's trail (who created and revoked it) and its
state at a point, through the real CLI; never its secret or hash."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from domain.api_key import parse_key
from modelledger.cli import cli
from services.container import Container
from services.models import Actor
from tests.helpers import register


@pytest.fixture
def run(container: Container, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    settings = container.settings
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MODELLEDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MODELLEDGER_PG_SCHEMA", settings.pg_schema)
    monkeypatch.setenv("COLUMNS", "400")

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


def test_a_keys_trail_names_who_created_and_revoked_it(
    container: Container, run: Callable[..., tuple[int, str]]
) -> None:
    owner = uuid.uuid4()
    model_id = register(container, owner, "m")
    alice = Actor(owner, "req-1", subject="alice", issuer="https://idp.example")
    view, text = container.keys.create(owner, "ci", [model_id], alice.who())
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    container.keys.revoke(owner, view.id, Actor(owner, "req-2", subject="bob").who())

    code, output = run("audit", "--key", str(view.id), "--json")
    assert code == 0, output
    document = json.loads(output)
    assert [(e["type"], e["actor"], e["correlation_id"]) for e in document["events"]] == [
        ("Created", "alice", "req-1"), ("Revoked", "bob", "req-2"),
    ]
    assert document["events"][0]["changes"]["models"] == [str(model_id)]
    assert document["state"]["name"] == "ci"
    assert document["state"]["revoked_at"] is not None
    _, before = run("audit", "--key", str(view.id), "--as-of", between.isoformat(), "--json")
    assert json.loads(before)["state"]["revoked_at"] is None
    _, table = run("audit", "--key", str(view.id))
    assert "alice" in table
    assert "bob" in table
    secret = parse_key(text)[1]  # type: ignore[index]
    row: Any = container.registry_log.repository.get(view.id)
    for shown in (output, table):
        assert secret not in shown
        assert row.secret_sha256 not in shown


def test_a_model_id_is_no_key_and_a_key_id_no_model(
    container: Container, run: Callable[..., tuple[int, str]]
) -> None:
    owner = uuid.uuid4()
    model_id = register(container, owner, "m")
    view, _ = container.keys.create(owner, "ci", None, Actor(owner, "c").who())
    code, output = run("audit", "--key", str(model_id))
    assert (code, "no API key" in output) == (1, True)
    code, output = run("audit", str(view.id))
    assert (code, "no model" in output) == (1, True)


@pytest.mark.parametrize("args", [(), ("--key",), ("--archived-usage",)])
def test_a_model_or_a_key_must_be_named_once(
    container: Container, run: Callable[..., tuple[int, str]], args: tuple[str, ...]
) -> None:
    model_id = str(register(container, uuid.uuid4(), "m"))
    given = {(): [], ("--key",): [model_id, "--key", model_id],
             ("--archived-usage",): ["--key", model_id, "--archived-usage"]}[args]
    code, output = run("audit", *given)
    assert code == 2  # a usage error
    assert "Usage:" in output
