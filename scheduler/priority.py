"""Background work yields the CPUs to requests: jobs run at a lower OS priority (nice)."""

from __future__ import annotations

import contextlib
import os
import threading


def lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's nice value to at least ``nice`` (threads it starts inherit it).

    Linux applies ``setpriority(PRIO_PROCESS, tid)`` to one thread, so a job thread of the
    API process slows no request handler. Elsewhere, or without permission, nothing changes.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
