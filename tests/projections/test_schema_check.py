"""An app started against projection tables of another schema version says what to run."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import structlog
from click.testing import CliRunner

from modelledger.cli import cli
from projections.catalogue import SCHEMA_VERSIONS
from projections.schema_check import ensure_current_schema
from projections.store.base import SchemaMismatchError
from projections.usage import queries
from services.models import Actor
from services.usage import UsageRecord, Writer

if TYPE_CHECKING:
    from config.settings import Settings
    from services.container import Container


def outdate(container: Container, name: str, version: int = 99) -> None:
    store = container.store
    with store.write("setup") as cur:
        cur.execute(store.sql("UPDATE projection_state SET schema_version = ? WHERE name = ?"),
                    (version, name))


def test_tables_built_by_this_code_carry_its_schema_versions(container: Container) -> None:
    ensure_current_schema(container)  # raises SchemaMismatchError otherwise
    built = {name: version for name, (_, version, _) in container.store.positions().items()}
    assert built == SCHEMA_VERSIONS
    assert container.store.check_schema() == []


def test_outdated_projection_names_the_rebuild_command_and_rebuild_fixes_it(
    container: Container,
) -> None:
    owner = uuid.uuid4()
    model = container.models.register(Actor(owner, "t"), name="m")
    container.usage.record_batch(
        [UsageRecord(model_id=model["id"], request_id=f"r{i}", response_time_ms=5.0,
                     input_bytes=1, output_bytes=2, success=True, occurred_at=datetime.now(UTC))
         for i in range(7)],
        Writer(owner),
    )
    container.projector.catch_up_all()
    outdate(container, "usage")

    with pytest.raises(SchemaMismatchError) as raised:
        ensure_current_schema(container)
    message = str(raised.value)
    assert "modelledger projections rebuild usage" in message
    assert "schema version 99" in message
    assert "'models'" not in message

    container.projector.rebuild("usage")
    ensure_current_schema(container)
    totals, _ = queries.owner_usage(container.store, owner)
    assert totals.requests == 7


def test_worker_refuses_to_start_on_an_outdated_schema(
    container: Container, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    outdate(container, "models", 0)
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MODELLEDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MODELLEDGER_PG_SCHEMA", settings.pg_schema)
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        result = CliRunner().invoke(cli, ["worker"])
    finally:
        root.handlers[:] = handlers  # the command installed a JSON handler on a dead stream
        structlog.reset_defaults()
    assert result.exit_code == 1
    assert "modelledger projections rebuild models" in result.output
