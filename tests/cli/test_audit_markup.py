"""`modelledger audit` prints what users wrote (model names, request ids) literally, never as
rich markup."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from modelledger.cli import cli
from scheduler.compaction import compact_usage
from services.models import Actor
from tests.scheduler.usage_fixtures import NOW, usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from services.container import Container

FIRST = "[bold red]alert[/]"
SECOND = "[link=https://evil.example]click me[/link]"
REQUEST = "[blink]req-1[/blink]"
ESCAPE = "req-\x1b[31mred"  # a terminal escape sequence
EMOJI = "model :warning: name"


@pytest.fixture
def run(container: Container, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    settings = container.settings
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MODELLEDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MODELLEDGER_PG_SCHEMA", settings.pg_schema)
    monkeypatch.setenv("COLUMNS", "400")  # no cell wraps, so every value is on one line

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_audit_prints_model_names_literally(container: Container, run: Callable[..., str]) -> None:
    owner = uuid.uuid4()
    actor = Actor(owner, "[italic]corr[/italic]")
    model_id = container.models.register(actor, name=FIRST)["id"]
    container.models.update(actor, model_id, name=SECOND)
    container.models.update(actor, model_id, description=EMOJI)
    output = run("audit", str(model_id))
    assert FIRST in output  # in the changes of the rename and of the registration
    assert SECOND in output  # in the changes, and in the state
    assert EMOJI in output  # an emoji code stays text
    state = output[output.index("\n{"):]  # the state, printed after the trail
    assert f"'name': '{SECOND}'" in state


def test_audit_prints_archived_request_ids_literally(
    container: Container, run: Callable[..., str]
) -> None:
    owner = uuid.uuid4()
    model_id = container.models.register(Actor(owner, "c"), name="m")["id"]
    rng = random.Random(7)
    container.usage_log.record([
        usage((model_id, owner), REQUEST, NOW - timedelta(days=45), rng),
        usage((model_id, owner), ESCAPE, NOW - timedelta(days=44), rng),
    ])
    container.projector.catch_up_all()
    compact_usage(container, older_than=timedelta(days=30))
    output = run("audit", str(model_id), "--archived-usage")
    assert REQUEST in output
    assert "req-\\x1b[31mred" in output  # shown, not sent to the terminal
    assert "\x1b" not in output
    assert "2 archived usage record(s)" in output
