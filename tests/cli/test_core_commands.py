"""`modelledger projections` and `modelledger audit` through the real CLI."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from modelledger.cli import cli
from services.container import Container
from services.models import Actor
from services.usage import Writer
from tests.helpers import usage_records


@pytest.fixture
def run(container: Container, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    settings = container.settings
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MODELLEDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MODELLEDGER_PG_SCHEMA", settings.pg_schema)

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


def test_status_shows_position_head_and_lag(container: Container, run) -> None:  # type: ignore[no-untyped-def]
    owner = uuid.uuid4()
    model_id = container.models.register(Actor(owner, "c"), name="m")["id"]
    container.usage.record_batch(usage_records(model_id, 7), Writer(owner))
    code, output = run("projections", "status")
    assert code == 0
    usage_line = next(line for line in output.splitlines() if "usage" in line and "│" in line)
    cells = [cell.strip() for cell in usage_line.split("│")[1:-1]]
    assert cells == ["usage", "usage", "0", "7", "7"]


def test_rebuild_replays_the_log_and_reports_the_count(container: Container, run) -> None:  # type: ignore[no-untyped-def]
    owner = uuid.uuid4()
    model_id = container.models.register(Actor(owner, "c"), name="m")["id"]
    container.usage.record_batch(usage_records(model_id, 9), Writer(owner))
    code, output = run("projections", "rebuild", "usage")
    assert code == 0
    assert "9 events" in output
    assert container.models.get(owner, model_id).usage.requests == 9
    assert container.models.get(owner, model_id).usage.failures == 1


def test_rebuild_of_an_unknown_projection_fails_naming_it(run) -> None:  # type: ignore[no-untyped-def]
    code, output = run("projections", "rebuild", "nope")
    assert code != 0
    assert "nope" in output


def test_audit_replays_who_did_what_and_the_state_at_a_version(container: Container, run) -> None:  # type: ignore[no-untyped-def]
    owner = uuid.uuid4()
    actor = Actor(owner, "req-42", subject="alice", issuer="https://idp.example")
    model_id = container.models.register(actor, name="first")["id"]
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    container.models.update(actor, model_id, name="second")
    code, output = run("audit", str(model_id), "--json")
    assert code == 0
    trail = json.loads(output)
    assert [e["type"] for e in trail["events"]] == ["Registered", "MetadataUpdated"]
    assert trail["events"][1]["changes"] == {"name": {"old": "first", "new": "second"}}
    assert trail["events"][1]["actor"] == "alice"
    assert trail["events"][1]["actor_issuer"] == "https://idp.example"
    assert trail["events"][1]["correlation_id"] == "req-42"
    assert trail["state"]["name"] == "second"
    _, table = run("audit", str(model_id))
    assert "alice" in table  # the actor column names the subject
    _, at_version = run("audit", str(model_id), "--version", "1", "--json")
    assert json.loads(at_version)["state"]["name"] == "first"
    _, as_of = run("audit", str(model_id), "--as-of", between.isoformat(), "--json")
    assert json.loads(as_of)["state"]["name"] == "first"
    assert len(json.loads(as_of)["events"]) == 1


def test_audit_of_an_unknown_model_fails_with_a_clear_message(run) -> None:  # type: ignore[no-untyped-def]
    code, output = run("audit", str(uuid.uuid4()))
    assert code == 1
    assert "no model" in output


def test_audit_can_include_usage_that_compaction_archived(container: Container, run) -> None:  # type: ignore[no-untyped-def]
    from scheduler.compaction import compact_usage  # noqa: PLC0415
    from tests.scheduler.usage_fixtures import old_usage, register_models  # noqa: PLC0415

    models = register_models(container, 2)
    events = old_usage(models, 40, days_ago=(50, 40))
    container.usage_log.record(events)
    container.projector.catch_up_all()
    compact_usage(container, older_than=timedelta(days=30))
    model_id = models[0][0]
    code, output = run("audit", str(model_id), "--archived-usage", "--json")
    assert code == 0
    archived = json.loads(output)["archived_usage"]
    expected = sorted(e.request_id for e in events if e.model_id == model_id)
    assert sorted(u["request_id"] for u in archived) == expected
