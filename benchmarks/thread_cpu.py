"""Where a measured window's CPU went, per request: the server's threads by their Python names,
PostgreSQL, the load generator, and the rest of the machine (``predict_bench.py --breakdown``).

Threads are named with ``py-spy dump`` once, before the window (a thread without a Python name,
such as onnxruntime's own, counts as its process's "other"); CPU comes from each thread's
``/proc`` counters at the window's start and end, the load generator's from this process's
ended children, the machine's busy time from ``/proc/stat``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
# In display order; "kernel and other" is the machine's busy time that no part above accounts for.
PARTS = ("event loops", "inference threads", "spool writers", "workers, other",
         "shipper", "projections", "supervisor, other", "PostgreSQL", "wrk", "kernel and other")
SWITCHES = "context switches"  # per request, the whole machine's


def _stat(path: Path) -> tuple[str, int, int] | None:
    """(command name, parent pid, user + system ticks) of a /proc stat file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return name, int(fields[1]), int(fields[11]) + int(fields[12])


def _processes() -> dict[int, tuple[str, int, int]]:
    """Every process: pid -> (command name, parent pid, user + system ticks)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(entry / "stat")) is not None:
            found[int(entry.name)] = stat
    return found


def _tree(root: int, processes: dict[int, tuple[str, int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of process ``root`` and all its descendants, in seconds."""
    processes = _processes()
    return sum(processes[pid][2] for pid in _tree(root, processes) if pid in processes) / TICK


def python_thread_names(pid: int, py_spy: str) -> dict[int, str]:
    """OS thread id -> Python thread name of process ``pid`` ({} when py-spy cannot tell)."""
    done = subprocess.run(  # noqa: S603 - py-spy on a process this benchmark started
        [py_spy, "dump", "--pid", str(pid), "--json", "--nonblocking"],
        capture_output=True, text=True, check=False, timeout=30,
    )
    try:
        threads = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {}
    return {int(t["os_thread_id"]): str(t.get("thread_name") or "")
            for t in threads if t.get("os_thread_id")}


def _part(name: str, *, supervisor: bool) -> str:
    if supervisor:
        if name == "usage-shipper":
            return "shipper"
        return "projections" if name.startswith("projection-") else "supervisor, other"
    if name == "MainThread":
        return "event loops"
    if name.startswith("onnx-run"):
        return "inference threads"
    return "spool writers" if name.startswith("spool-writer") else "workers, other"


@dataclass
class Window:
    """The server's process tree, its threads' parts, and the counters at the window's start."""

    root: int
    parts: dict[tuple[int, int], str] = field(default_factory=dict)  # (pid, tid) -> part
    ticks: dict[tuple[int, int], int] = field(default_factory=dict)
    busy: int = 0  # the machine's busy ticks
    switches: int = 0  # the machine's context switches
    children: float = 0.0  # CPU seconds of this process's ended children (wrk, once it ends)


def _machine() -> tuple[int, int]:
    """The machine's busy ticks (user, nice, system, irq, softirq) and context switches."""
    lines = Path("/proc/stat").read_text().splitlines()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in lines[0].split()[1:8])
    switches = next(int(x.split()[1]) for x in lines if x.startswith("ctxt "))
    return user + nice + system + irq + softirq, switches


def _thread_ticks(window: Window) -> dict[tuple[int, int], int]:
    """Current ticks of the server's threads and of PostgreSQL's processes."""
    processes = _processes()
    server = set(_tree(window.root, processes))
    ticks: dict[tuple[int, int], int] = {}
    for pid, (name, _, _) in processes.items():
        outside = "PostgreSQL" if name.startswith("postgres") else None
        if pid not in server and outside is None:
            continue
        for task in Path(f"/proc/{pid}/task").glob("*"):
            if (stat := _stat(task / "stat")) is None:
                continue
            key = (pid, int(task.name))
            ticks[key] = stat[2]
            if outside is not None:
                window.parts[key] = outside
            elif key not in window.parts:  # started after naming: its process's "other"
                window.parts[key] = "supervisor, other" if pid == window.root else "workers, other"
    return ticks


def start(root: int) -> Window | None:
    """Name the threads of the server rooted at ``root`` and read the counters; None without
    py-spy (``pip install py-spy``)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    window = Window(root)
    for pid in _tree(root, _processes()):
        try:  # multiprocessing's resource tracker is the supervisor's helper, not a worker
            helper = b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        for tid, name in python_thread_names(pid, py_spy).items():
            window.parts[(pid, tid)] = _part(name, supervisor=pid == root or helper)
    window.ticks = _thread_ticks(window)
    window.busy, window.switches = _machine()
    window.children = _children_cpu()
    return window


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def finish(window: Window, requests: int) -> dict[str, float]:
    """CPU per request (µs) of each part since ``start``, and the machine's context switches
    per request (``SWITCHES``); call it once the load generator, a child of this process, has
    ended (its CPU is what this process's children used)."""
    busy, switches = _machine()
    busy, switches = busy - window.busy, switches - window.switches
    now = _thread_ticks(window)
    spent = dict.fromkeys(PARTS, 0.0)
    for key, ticks in now.items():
        spent[window.parts[key]] += ticks - window.ticks.get(key, 0)
    spent["wrk"] = (_children_cpu() - window.children) * TICK
    spent["kernel and other"] = max(0.0, busy - sum(spent.values()))
    per_request = {part: ticks / TICK / max(requests, 1) * 1e6 for part, ticks in spent.items()}
    return {**per_request, SWITCHES: switches / max(requests, 1)}
