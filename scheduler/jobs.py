"""The jobs: plain functions that receive their services, do bounded work and return a summary."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from projections import watchdog
from projections.models import queries
from scheduler import archive, history
from scheduler.compaction import compact_usage

if TYPE_CHECKING:
    from uuid import UUID

    from services.container import Container

log = logging.getLogger("modelledger.scheduler.jobs")

SNAPSHOT_EVERY = 100  # events since the last snapshot that make loading a model slow
SNAPSHOTS_PER_RUN = 500


def compact_usage_job(container: Container) -> dict[str, Any]:
    """Compact usage older than the retention into hourly roll-ups."""
    days = container.settings.usage_retention_days
    return compact_usage(container, older_than=timedelta(days=days)).as_dict()


def snapshot_models(
    container: Container, *, every: int = SNAPSHOT_EVERY, limit: int = SNAPSHOTS_PER_RUN
) -> dict[str, Any]:
    """Snapshot models with ``every`` events or more since their last snapshot (``limit`` max)."""
    checked = taken = 0
    after: UUID | None = None
    while taken < limit:
        rows = queries.models_with_versions(container.store, at_least=every, after=after)
        if not rows:
            break
        for model_id, version in rows:
            checked += 1
            if version - _snapshot_version(container, model_id) >= every:
                container.models.take_snapshot(model_id)
                taken += 1
                if taken >= limit:
                    break
        after = rows[-1][0]
    summary = {"checked": checked, "snapshots": taken}
    log.info("snapshots", extra=summary)
    return summary


def _snapshot_version(container: Container, model_id: UUID) -> int:
    snapshots = container.registry_log.snapshots
    if snapshots is None:
        raise RuntimeError("the registry must snapshot models (snapshotting_intervals)")
    latest = next(iter(snapshots.get(model_id, desc=True, limit=1)), None)
    return 0 if latest is None else int(latest.originator_version)


def prune_history(container: Container, *, keep_days: int | None = None) -> dict[str, Any]:
    """Delete job runs older than the history retention."""
    days = keep_days if keep_days is not None else container.settings.job_history_days
    return {"deleted": history.prune(container.store, keep_days=days), "keep_days": days}


def prune_archive(container: Container, *, keep_days: int | None = None) -> dict[str, Any]:
    """Delete archive files older than the archive retention (0, the default, keeps all)."""
    days = (
        keep_days
        if keep_days is not None
        else container.settings.archive_retention_days
    )
    if days <= 0:
        return {"deleted": 0, "keep_days": None}
    removed = archive.prune(archive.archive_dir(container.settings.data_dir), keep_days=days)
    return {"deleted": len(removed), "keep_days": days}


def sweep_artifacts(container: Container) -> dict[str, Any]:
    """Retry removing the artifact files of deleted models whose removal failed or is pending,
    and remove upload staging files older than ``upload_staging_max_age``."""
    summary = container.models.sweep_artifacts()
    container.projector.catch_up("models")  # the next sweep must not see these as pending
    staging = container.artifacts.sweep_staging(container.settings.upload_staging_max_age)
    return {**summary, "staging_removed": staging}


def projection_watchdog(container: Container) -> dict[str, Any]:
    """Job: log stalled projections; the summary names them with every lag."""
    report = watchdog.check(container.projector)
    names = [p.name for p in report if p.stalled]
    for p in report:
        if p.stalled:
            log.warning(
                "projection stalled",
                extra={"projection": p.name, "lag": p.lag, "idle_seconds": round(p.idle_seconds)},
            )
    return {"stalled": names, "lags": {p.name: p.lag for p in report}}
