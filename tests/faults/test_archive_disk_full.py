"""The usage archive's disk full (a small tmpfs): compaction fails cleanly (the chunks archived
before the disk filled are compacted, every other event stays raw, the statistics stay as they
were), and a run after the disk has room again succeeds."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from scheduler import archive, history
from scheduler.compaction import RAW_TOPIC
from scheduler.runner import run_job
from services.container import Container
from tests.faults.processes import ROOT
from tests.scheduler.usage_fixtures import old_usage, register_models, usage_tables

EVENTS = 10_000  # about 1 MB of archive: four times the disk
SMALL, LARGE = "256k", "64m"


def _command(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which(name)
    assert path is not None
    return subprocess.run([path, *args], capture_output=True, text=True, check=False)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return _command("mount", *args)


@pytest.fixture
def small_archive_disk(settings: Settings) -> Iterator[Path]:
    """The data directory's archive folder on a 256 KiB tmpfs, unmounted afterwards."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount command to mount a small tmpfs")
    directory = archive.archive_dir(settings.data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    mounted = _mount("-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(directory))
    if mounted.returncode != 0:
        reason = "not root" if os.geteuid() != 0 else mounted.stderr.strip()
        pytest.skip(f"cannot mount a small tmpfs for the archive ({reason})")
    try:
        yield directory
    finally:
        if _command("umount", str(directory)).returncode != 0:
            _command("umount", "-l", str(directory))  # busy: detach it now, freed when idle


def _raw_events(container: Container) -> int:
    return sum(n.topic == RAW_TOPIC
               for n in container.usage_log.recorder.select_notifications(1, 10**9))


def _archived(directory: Path) -> int:
    return sum(1 for _ in archive.read_archive(directory))


def _only_complete_files(directory: Path) -> None:
    """Every file under a final name holds whole gzip members, and nothing else is left."""
    finals = archive.days(directory)
    assert {p.name for p in directory.iterdir()} == {p.name for _, p in finals}
    for _, path in finals:
        gzip.decompress(path.read_bytes())  # EOFError on a truncated member


def _load_old_usage(container: Container) -> list[str]:
    models = register_models(container, 4)
    events = old_usage(models, EVENTS, days_ago=(60, 31))
    container.usage_log.record(events)
    container.projector.catch_up_all()
    return sorted(e.request_id for e in events)


def test_compaction_on_a_full_archive_disk_fails_cleanly_and_a_later_run_succeeds(
    container: Container, small_archive_disk: Path
) -> None:
    request_ids = _load_old_usage(container)
    statistics = usage_tables(container)

    failed = run_job(container, "compact-usage")

    assert failed.outcome == "error"
    assert "No space left on device" in failed.summary["error"]
    assert history.recent(container.store, job="compact-usage")[0].outcome == "error"
    _only_complete_files(small_archive_disk)
    container.projector.catch_up_all()
    # What the disk took before it filled was archived, then compacted; the rest stayed raw.
    left_raw = _raw_events(container)
    assert left_raw > 0
    assert _archived(small_archive_disk) >= EVENTS - left_raw
    assert usage_tables(container) == statistics

    assert _mount("-o", f"remount,size={LARGE}", str(small_archive_disk)).returncode == 0
    rerun = run_job(container, "compact-usage")

    assert rerun.outcome == "ok", rerun.summary
    assert rerun.summary["events"] == left_raw
    container.projector.catch_up_all()
    assert _raw_events(container) == 0
    assert usage_tables(container) == statistics
    _only_complete_files(small_archive_disk)
    archived = archive.read_archive(small_archive_disk)
    assert sorted(r["request_id"] for r in archived) == request_ids


def test_compact_command_on_a_full_archive_disk_exits_with_a_message_not_a_traceback(
    container: Container, settings: Settings, small_archive_disk: Path
) -> None:
    _load_old_usage(container)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLEDGER_")} | {
        "MODELLEDGER_DATA_DIR": str(settings.data_dir),
        "MODELLEDGER_DATABASE_URL": settings.resolved_database_url,
        "MODELLEDGER_PG_SCHEMA": settings.pg_schema,
    }

    done = subprocess.run([sys.executable, "-m", "modelledger", "compact"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "No space left on device" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert _raw_events(container) > 0
    assert _archived(small_archive_disk) >= EVENTS - _raw_events(container)
    _only_complete_files(small_archive_disk)
