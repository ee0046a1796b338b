"""``modelledger compact``, ``jobs`` and ``jobs run`` from the command line (SQLite)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from config.settings import load_settings
from modelledger.bootstrap import build
from modelledger.cli import cli
from tests.scheduler.usage_fixtures import old_usage, register_models

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    container = build(load_settings({}, data_dir=tmp_path))
    try:
        models = register_models(container, 2)
        container.usage_log.record(old_usage(models, 120, days_ago=(40, 35)))
        container.projector.catch_up_all()
    finally:
        container.close()
    return tmp_path


def _invoke(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, list(args), env={"MODELLEDGER_DATA_DIR": str(data_dir)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def _row(output: str, label: str) -> str:
    line = next(line for line in output.splitlines() if f" {label} " in line)
    return line.split("│")[2].strip()


def test_compact_dry_run_prints_events_models_hours_and_bytes_without_compacting(
    data_dir: Path,
) -> None:
    dry = _invoke(data_dir, "compact", "--dry-run")
    assert "would compact" in dry
    assert (_row(dry, "events"), _row(dry, "models")) == ("120", "2")
    assert int(_row(dry, "hours")) > 0
    assert int(_row(dry, "bytes reclaimed")) > 0

    real = _invoke(data_dir, "compact", "--older-than", "30d")
    assert _row(real, "events") == "120"
    assert _row(_invoke(data_dir, "compact"), "events") == "0"


def test_compact_rejects_an_unreadable_age(data_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["compact", "--older-than", "a month"], env={"MODELLEDGER_DATA_DIR": str(data_dir)}
    )
    assert result.exit_code != 0
    assert "30d" in result.output


def test_jobs_run_runs_a_job_now_and_jobs_prints_the_history(data_dir: Path) -> None:
    ran = json.loads(_invoke(data_dir, "jobs", "run", "compact-usage"))
    assert (ran["outcome"], ran["events"]) == ("ok", 120)

    listed = _invoke(data_dir, "jobs", "--json")
    (run,) = [json.loads(line) for line in listed.splitlines()]
    assert (run["job"], run["outcome"], run["summary"]["events"]) == ("compact-usage", "ok", 120)
    assert "compact-usage" in _invoke(data_dir, "jobs")
