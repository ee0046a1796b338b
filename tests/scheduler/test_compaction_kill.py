"""Killing compaction at any point loses and double-counts nothing; a rerun completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scheduler import archive
from scheduler.compaction import RAW_TOPIC, compact_usage
from tests.scheduler.test_compaction import RETENTION, _topics
from tests.scheduler.usage_fixtures import old_usage, register_models, usage_tables

if TYPE_CHECKING:
    from services.container import Container

ROOT = Path(__file__).resolve().parents[2]


def _run_until_parked(container: Container, point: str) -> None:
    settings = container.settings
    args = [str(settings.data_dir)]
    if settings.backend == "postgres":
        args += [settings.database_url, settings.pg_schema]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.scheduler.kill_compaction", point, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "parked"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.mark.parametrize("point", ["between-chunks", "archived", "in-transaction"])
def test_killed_compaction_loses_and_double_counts_nothing(
    container: Container, point: str
) -> None:
    models = register_models(container, 3)
    events = old_usage(models, 1_000, days_ago=(50, 31))
    container.usage_log.record(events)
    container.projector.catch_up_all()
    before = usage_tables(container)

    _run_until_parked(container, point)

    container.projector.catch_up_all()
    assert usage_tables(container) == before
    container.usage_log.record(old_usage(models, 1, days_ago=(1, 0), prefix="after-kill"))
    assert container.usage_log.record(events) == set()  # retries stay duplicates
    rerun = compact_usage(container, older_than=RETENTION)
    container.projector.catch_up_all()
    assert rerun.events > 0
    assert _topics(container)[RAW_TOPIC] == 1
    after = usage_tables(container)
    container.projector.rebuild("usage")
    assert usage_tables(container) == after
    assert sum(row[1] + row[4] for row in after["usage_owner_totals"]) == 1_001
    records = archive.read_archive(archive.archive_dir(container.settings.data_dir))
    assert sorted(r["request_id"] for r in records) == sorted(e.request_id for e in events)
