"""Scheduler jobs run at a lower OS priority than requests (Linux thread nice values)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from config.settings import load_settings
from scheduler.priority import lower_thread_priority
from scheduler.runner import build_scheduler

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_thread_lowers_its_own_priority_and_no_other() -> None:
    seen: list[int] = []

    def job() -> None:
        lower_thread_priority(10)
        seen.append(_nice_of_this_thread())

    before = _nice_of_this_thread()
    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    assert seen == [max(10, before)]
    assert _nice_of_this_thread() == before


def test_the_schedulers_job_threads_run_at_the_job_nice_value(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path, job_nice=7)
    container = type("C", (), {"settings": settings})()
    scheduler = build_scheduler(container, first_run_delay=3600)
    seen = threading.Event()
    values: list[int] = []

    def probe() -> None:
        values.append(_nice_of_this_thread())
        seen.set()

    scheduler.start()
    try:
        job = scheduler.add_job(probe)
        assert seen.wait(10)
        # The scheduler removes a one-off job after its run: shutting down before that races.
        deadline = time.monotonic() + 10
        while scheduler.get_job(job.id) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        scheduler.shutdown(wait=True)
    assert values == [max(7, _nice_of_this_thread())]
