"""The sweep-artifacts job removes upload staging files older than the maximum age, and only
those: an upload in progress keeps writing its file."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from scheduler import run_job
from services.container import Container

if TYPE_CHECKING:
    from pathlib import Path


def _staged(container: Container, age: float) -> Path:
    upload = container.artifacts.begin()
    upload.write(b"part of a model")
    upload.handle.close()
    then = time.time() - age
    os.utime(upload.path, (then, then))
    return upload.path


def test_the_sweep_removes_staging_files_older_than_the_maximum_age(
    container: Container,
) -> None:
    max_age = container.settings.upload_staging_max_age
    orphans = [_staged(container, max_age + 60), _staged(container, 10 * max_age)]
    recent = _staged(container, max_age - 60)
    in_progress = container.artifacts.begin()
    in_progress.write(b"still arriving")

    result = run_job(container, "sweep-artifacts")

    assert result.outcome == "ok", result.summary
    assert result.summary["staging_removed"] == 2
    assert not any(path.exists() for path in orphans)
    assert recent.exists()
    in_progress.write(b" and more")  # its file is still there to finish
    assert in_progress.path.exists()
    in_progress.discard()


def test_the_sweep_runs_before_any_upload_made_the_staging_folder(
    container: Container,
) -> None:
    assert not container.artifacts.staging.exists()

    result = run_job(container, "sweep-artifacts")

    assert result.outcome == "ok", result.summary
    assert result.summary["staging_removed"] == 0
