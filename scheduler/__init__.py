"""Periodic jobs (compaction, snapshots, retention, watchdog) run by APScheduler.

``start_in_process(container, stop)`` runs them inside ``modelledger serve``.
"""

from scheduler.runner import JOBS, RunResult, run_job, start_in_process

__all__ = ["JOBS", "RunResult", "run_job", "start_in_process"]
