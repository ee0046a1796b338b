"""Jobs run one at a time across processes, leave a run history and do their bounded work."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from projections import watchdog
from scheduler import archive, history, jobs, run_job, start_in_process
from scheduler.locks import job_lock
from scheduler.runner import JOBS, build_scheduler
from services.models import Actor
from tests.scheduler.usage_fixtures import old_usage, register_models

if TYPE_CHECKING:
    from services.container import Container


def test_a_job_held_by_another_process_is_skipped_not_run_twice(container: Container) -> None:
    ran: list[int] = []

    def job(_: Container) -> dict[str, object]:
        ran.append(1)
        return {}

    with job_lock(container.settings, "compact-usage") as held:
        assert held
        result = run_job(container, "compact-usage", job)
    assert result.outcome == "skipped"
    assert ran == []
    assert run_job(container, "compact-usage", lambda _: {"n": 1}).outcome == "ok"


def test_every_run_is_recorded_with_its_outcome_and_summary(container: Container) -> None:
    def boom(_: Container) -> dict[str, object]:
        raise RuntimeError("disk full")

    run_job(container, "snapshot-models", lambda _: {"snapshots": 3})
    run_job(container, "prune-archive", boom)

    runs = history.recent(container.store)
    assert [(r.job, r.outcome) for r in runs] == [
        ("prune-archive", "error"),
        ("snapshot-models", "ok"),
    ]
    assert runs[0].summary == {"error": "RuntimeError: disk full"}
    assert runs[1].summary == {"snapshots": 3}
    assert all(r.finished_at is not None and r.finished_at >= r.started_at for r in runs)


def test_job_history_retention_deletes_old_runs_only(container: Container) -> None:
    run_job(container, "snapshot-models", lambda _: {})
    assert history.prune(container.store, keep_days=1) == 0
    later = datetime.now(UTC) + timedelta(days=2)
    assert history.prune(container.store, keep_days=1, now=later) == 1
    assert history.recent(container.store) == []


def test_models_with_long_histories_are_snapshotted_once(container: Container) -> None:
    owner = uuid.uuid4()
    actor = Actor(owner, "c")
    long_lived = container.models.register(actor, name="busy", framework="torch")["id"]
    container.models.register(actor, name="quiet", framework="torch")
    for i in range(12):
        container.models.update(actor, long_lived, description=f"d{i}")
    container.projector.catch_up_all()

    first = jobs.snapshot_models(container, every=10)
    second = jobs.snapshot_models(container, every=10)

    assert (first["snapshots"], second["snapshots"]) == (1, 0)
    snapshots = container.registry_log.snapshots
    assert snapshots is not None
    (snapshot,) = snapshots.get(long_lived)
    assert snapshot.originator_version == 13
    assert container.models.get(owner, long_lived)["description"] == "d11"


def stalled(container: Container, now: datetime | None = None) -> list[str]:
    return [p.name for p in watchdog.check(container.projector, now=now) if p.stalled]


def test_a_projection_with_lag_and_no_progress_is_reported_stalled(container: Container) -> None:
    models = register_models(container, 1)
    container.projector.catch_up_all()
    container.usage_log.record(old_usage(models, 5, days_ago=(2, 1)))

    assert stalled(container) == []  # lagging, but not for long
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert stalled(container, now=later) == ["usage"]
    container.projector.catch_up_all()
    assert stalled(container, now=later) == []
    assert jobs.projection_watchdog(container) == {"stalled": [], "lags": {"models": 0, "usage": 0}}


def test_archive_retention_is_off_by_default_and_deletes_old_days_when_set(
    container: Container,
) -> None:
    models = register_models(container, 1)
    directory = archive.archive_dir(container.settings.data_dir)
    archive.write(
        directory, [(i, e) for i, e in enumerate(old_usage(models, 20, days_ago=(50, 1)))]
    )
    files = len(archive.days(directory))

    assert jobs.prune_archive(container) == {"deleted": 0, "keep_days": None}
    assert len(archive.days(directory)) == files
    pruned = jobs.prune_archive(container, keep_days=10)
    assert 0 < pruned["deleted"] < files
    assert all(
        day >= datetime.now(UTC).date() - timedelta(days=10) for day, _ in archive.days(directory)
    )


def test_the_scheduler_schedules_every_job_and_runs_them_in_process(container: Container) -> None:
    scheduler = build_scheduler(container)
    assert sorted(job.id for job in scheduler.get_jobs()) == sorted(JOBS)

    stop = threading.Event()
    thread = start_in_process(container, stop, first_run_delay=0.1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(
        {r.job for r in history.recent(container.store)}
    ) < len(JOBS):
        time.sleep(0.2)
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    runs = history.recent(container.store)
    assert {r.job for r in runs} == set(JOBS)
    assert all(r.outcome == "ok" for r in runs), [r.summary for r in runs if r.outcome != "ok"]
