"""The jobs: plain functions that receive their services, do bounded work and return a summary."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from modelledger.artifacts import ArtifactStore, remove_pending
from scheduler import archive, history
from scheduler.compaction import compact_usage
from scheduler.watchdog import projection_watchdog

if TYPE_CHECKING:
    from uuid import UUID

    from modelledger.bootstrap import Container

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
    registry = container.registry
    store = container.store
    checked = taken = 0
    after: UUID | None = None
    while taken < limit:
        keyset, params = ("AND id > ? ", [store.to_db(after, "uuid")]) if after else ("", [])
        with store.read() as cur:
            cur.execute(
                store.q(
                    f"SELECT id, version FROM model_view WHERE version >= ? {keyset}"
                    "ORDER BY id LIMIT 500"
                ),
                [every, *params],
            )
            rows = [(store.from_db(r[0], "uuid"), int(r[1])) for r in cur.fetchall()]
        if not rows:
            break
        for model_id, version in rows:
            checked += 1
            if version - _snapshot_version(container, model_id) >= every:
                registry.take_snapshot(model_id)
                taken += 1
                if taken >= limit:
                    break
        after = rows[-1][0]
    summary = {"checked": checked, "snapshots": taken}
    log.info("snapshots", extra=summary)
    return summary


def _snapshot_version(container: Container, model_id: UUID) -> int:
    snapshots = container.registry.snapshots
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
    """Retry removing the artifact files of deleted models whose removal failed or is pending."""
    settings = container.settings
    store = ArtifactStore(settings.data_dir / "artifacts", settings.max_upload_bytes)
    summary = remove_pending(store, container.registry, container.store)
    container.projector.catch_up("models")  # the next sweep must not see these as pending
    return summary


__all__ = [
    "compact_usage_job",
    "projection_watchdog",
    "prune_archive",
    "prune_history",
    "snapshot_models",
    "sweep_artifacts",
]
