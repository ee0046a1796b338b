"""Periodic jobs (compaction, snapshots, retention, watchdog) run by APScheduler.

``start_in_process(container, stop)`` runs them inside ``modelledger serve``;
``watchdog.stalled(container)`` names stalled projections for health checks and metrics.
"""

from scheduler.runner import JOBS, RunResult, run_job, start_in_process
from scheduler.watchdog import stalled

__all__ = ["JOBS", "RunResult", "run_job", "stalled", "start_in_process"]
