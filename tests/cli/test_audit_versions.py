"""`modelledger audit` shows every step of a model's versions: uploads, serving changes and
removals, who made them, and the state's serving split."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

from click.testing import CliRunner

from modelledger.cli import cli
from services.models import Actor

if TYPE_CHECKING:
    import pytest

    from services.container import Container


def test_audit_lists_uploads_serving_changes_and_removals(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = container.settings
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MODELLEDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MODELLEDGER_PG_SCHEMA", settings.pg_schema)
    actor = Actor(uuid.uuid4(), "c", subject="alice")
    first = container.artifacts.begin()
    first.write(b"v1")
    model_id = container.models.register(actor, name="m", upload=first, filename="w.bin")["id"]
    second = container.artifacts.begin()
    second.write(b"v2")
    container.models.upload_version(actor, model_id, second, filename="w.bin", notes="new")
    container.models.update(actor, model_id, serving=[(2, 25), (1, 75)])
    container.models.update(actor, model_id, serving=[(2, 100)])
    container.models.remove_version(actor, model_id, 1)

    result = CliRunner().invoke(cli, ["audit", str(model_id), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    trail = document["events"]
    steps = [(e["type"], e["actor"]) for e in trail]
    assert steps == [
        ("Registered", "alice"), ("ArtifactStored", "alice"), ("VersionUploaded", "alice"),
        ("ServingChanged", "alice"), ("ServingChanged", "alice"), ("VersionRemoved", "alice"),
    ]
    uploaded = trail[2]["changes"]
    assert (uploaded["number"], uploaded["filename"], uploaded["notes"]) == (2, "w.bin", "new")
    assert trail[3]["changes"] == {"previous": [[1, 100]], "serving": [[2, 25], [1, 75]]}
    assert trail[5]["changes"]["number"] == 1
    assert (document["state"]["serving"], document["state"]["latest_version"]) == ([[2, 100]], 2)
