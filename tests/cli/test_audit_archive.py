"""`modelledger audit --archived-usage` reads a damaged archive: it warns naming the file and
lists every record it could read."""

from __future__ import annotations

import gzip
import json
import random
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from click.testing import CliRunner

from modelledger.cli import cli
from scheduler import archive
from scheduler.compaction import compact_usage
from services.models import Actor
from tests.scheduler.usage_fixtures import NOW, usage

if TYPE_CHECKING:
    import pytest

    from services.container import Container


def test_audit_warns_of_a_damaged_archive_and_lists_the_rest(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = container.settings
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MODELLEDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MODELLEDGER_PG_SCHEMA", settings.pg_schema)
    owner = uuid.uuid4()
    model_id = container.models.register(Actor(owner, "c"), name="m")["id"]
    rng = random.Random(3)
    day = (NOW - timedelta(days=45)).replace(hour=1)
    container.usage_log.record([
        usage((model_id, owner), f"r{i}", day + timedelta(minutes=i), rng) for i in range(5)
    ])
    container.projector.catch_up_all()
    compact_usage(container, older_than=timedelta(days=30))
    [(_, path)] = archive.days(archive.archive_dir(settings.data_dir))
    with path.open("ab") as file:  # a member an appending writer left cut short
        file.write(gzip.compress(b'{"id": "lost"}\n' * 100)[:30])

    result = CliRunner().invoke(
        cli, ["audit", str(model_id), "--archived-usage", "--json"], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["archived_usage"]
    assert sorted(u["request_id"] for u in listed) == [f"r{i}" for i in range(5)]
    assert f"warning: damaged usage archive {path}" in result.stderr
    assert "truncated" in result.stderr
