"""The job runner: APScheduler 3.11 with an in-memory job store, one run per job at a time.

APScheduler 3 cannot share a persistent job store between processes, so the jobs are defined
here in code and every process may schedule them; the job lock (``locks.job_lock``) lets one
run at a time across all processes, the others skip that tick. Each run is logged and recorded
in the run history (``history``), whatever its outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from scheduler import history, jobs
from scheduler.locks import job_lock
from scheduler.priority import lower_thread_priority
from services.container import Container

log = logging.getLogger("modelledger.scheduler")

Job = Callable[[Container], dict[str, Any]]


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: Job
    every: timedelta


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec("compact-usage", jobs.compact_usage_job, timedelta(hours=1)),
        JobSpec("snapshot-models", jobs.snapshot_models, timedelta(minutes=30)),
        JobSpec("prune-archive", jobs.prune_archive, timedelta(days=1)),
        JobSpec("prune-history", jobs.prune_history, timedelta(days=1)),
        JobSpec("projection-watchdog", jobs.projection_watchdog, timedelta(minutes=1)),
        JobSpec("sweep-artifacts", jobs.sweep_artifacts, timedelta(minutes=5)),
    )
}


@dataclass(frozen=True)
class RunResult:
    job: str
    outcome: str  # ok, error, skipped (another run holds the lock)
    summary: dict[str, Any]
    seconds: float


def run_job(container: Container, name: str, func: Job | None = None) -> RunResult:
    """Run job ``name`` now unless another process runs it; record it in the history."""
    func = func or JOBS[name].func
    started = time.monotonic()
    with job_lock(container.settings, name) as held:
        if not held:
            log.info("job skipped", extra={"job": name, "reason": "running elsewhere"})
            return RunResult(name, "skipped", {}, 0.0)
        run_id = history.started(container.store, name, datetime.now(UTC))
        try:
            summary = func(container)
        except Exception as error:
            log.exception("job failed", extra={"job": name})
            summary, outcome = {"error": f"{type(error).__name__}: {error}"}, "error"
        else:
            outcome = "ok"
        history.finished(container.store, run_id, datetime.now(UTC), outcome, summary)
    seconds = time.monotonic() - started
    log.info(
        "job finished",
        extra={
            "job": name,
            "outcome": outcome,
            "seconds": round(seconds, 3),
            **{f"summary_{k}": v for k, v in summary.items()},
        },
    )
    return RunResult(name, outcome, summary, seconds)


def build_scheduler(container: Container, *, first_run_delay: float = 10.0) -> BackgroundScheduler:
    """A scheduler (not started) running every job at its interval."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        # Job threads run at a lower OS priority: a compaction leaves the CPUs to requests.
        executors={"default": ThreadPoolExecutor(len(JOBS), pool_kwargs={
            "initializer": lower_thread_priority, "initargs": (container.settings.job_nice,),
        })},
    )
    first = datetime.now(UTC) + timedelta(seconds=first_run_delay)
    for spec in JOBS.values():
        scheduler.add_job(
            run_job,
            "interval",
            args=[container, spec.name],
            id=spec.name,
            name=spec.name,
            seconds=spec.every.total_seconds(),
            next_run_time=first,
        )
    return scheduler


def start_in_process(
    container: Container, stop: threading.Event, *, first_run_delay: float = 10.0
) -> threading.Thread:
    """Run the jobs in background threads of this process until ``stop`` is set.

    Returns the thread that shuts the scheduler down (waiting for a running job) on ``stop``.
    """
    scheduler = build_scheduler(container, first_run_delay=first_run_delay)
    scheduler.start()
    log.info("scheduler started", extra={"jobs": sorted(JOBS)})

    def wait_then_shut_down() -> None:
        stop.wait()
        scheduler.shutdown(wait=True)
        log.info("scheduler stopped")

    thread = threading.Thread(target=wait_then_shut_down, name="scheduler", daemon=True)
    thread.start()
    return thread
