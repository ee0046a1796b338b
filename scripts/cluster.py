"""The docker-compose topology without Docker, on one machine, for trying out and for tests.

    python scripts/cluster.py start [--dir DIR]   # PostgreSQL, 2 API replicas, 2 workers, scheduler
    python scripts/cluster.py status [--dir DIR]
    python scripts/cluster.py stop [--dir DIR]    # stops them all; the data stays in DIR
    python scripts/cluster.py destroy [--dir DIR] # stops them and deletes the data

A throwaway PostgreSQL cluster (initdb + pg_ctl) lives in DIR/pg (as root: in a temporary
directory the postgres user can reach); ``destroy`` stops and deletes it all; every service shares
DIR/data and one generated JWT secret. ``start`` returns once both APIs answer and prints the
state (also kept in DIR/cluster.json: ports, process ids, database URL, secret). Starting again
after ``stop`` reuses the same database. Logs: DIR/logs/NAME.log.
"""

# ruff: noqa: INP001, S603 - a standalone script; it runs only the binaries it names
from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_DIR = Path("var/cluster")
CLI = [sys.executable, "-c", "from modelledger.cli import main; main()"]
STOP_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    raise SystemExit("pg_ctl not found: install the PostgreSQL server binaries")


def _run_as() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root


def _pg_dir(root: Path, state: dict[str, Any]) -> Path:
    """Where the PostgreSQL cluster lives: DIR/pg, or (as root) a directory postgres can reach."""
    if "pg_dir" not in state:
        if os.geteuid() == 0:  # the server runs as postgres, which may not reach DIR
            pg = Path(tempfile.mkdtemp(prefix="modelledger-cluster-pg-"))
            shutil.chown(pg, "postgres", "postgres")
        else:
            pg = root / "pg"
        state["pg_dir"] = str(pg)
    return Path(state["pg_dir"])


def _pg_ctl(pg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data = str(pg / "data")
    return subprocess.run([*_run_as(), str(_pg_bindir() / "pg_ctl"), "-D", data, *args],
                          check=False, capture_output=True, text=True)


def start_postgres(root: Path, state: dict[str, Any]) -> None:
    pg = _pg_dir(root, state)
    if not (pg / "data" / "PG_VERSION").exists():
        pg.mkdir(parents=True, exist_ok=True)
        subprocess.run([*_run_as(), str(_pg_bindir() / "initdb"), "-D", str(pg / "data"),
                        "-U", "postgres", "-A", "trust"], check=True, capture_output=True)
    port = state.get("pg_port") or _free_port()
    done = _pg_ctl(pg, "-l", str(pg / "log"), "-w", "-t", "60", "-o",
                   f"-p {port} -k {pg} -c listen_addresses=127.0.0.1", "start")
    if done.returncode != 0:
        raise SystemExit(f"pg_ctl start failed: {done.stderr or done.stdout}")
    state["pg_port"] = port
    state["database_url"] = f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _environment(root: Path, state: dict[str, Any]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELLEDGER_")}
    env |= {
        "MODELLEDGER_DATABASE_URL": state["database_url"],
        "MODELLEDGER_DATA_DIR": str(root / "data"),
        "MODELLEDGER_JWT_SECRET": state["jwt_secret"],
        "MODELLEDGER_EMBEDDED_WORKER": "false",
        "MODELLEDGER_PG_POOL_SIZE": "4",
        "MODELLEDGER_POLL_INTERVAL": "0.5",
        "MODELLEDGER_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _spawn(root: Path, name: str, args: list[str], env: dict[str, str]) -> int:
    log = (root / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [*CLI, *args], env=env | {"PGAPPNAME": f"modelledger-{name}"}, stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    return process.pid


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)  # noqa: PLR2004
    except OSError:
        return False


def _wait(name: str, pid: int, ready: Callable[[], bool], deadline: float) -> None:
    while not ready():
        if not _alive(pid):
            raise SystemExit(f"{name} exited during start-up; see its log")
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} was not ready in time; see its log")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))


def start(
    root: Path, *, api_count: int = 2, worker_count: int = 2, timeout: float = 90
) -> dict[str, Any]:
    """Start every service (or restart them on the existing data); return the state.

    Services start one after the other, each once the previous is ready: opening the event
    store runs DDL (``CREATE OR REPLACE FUNCTION``) that fails when two processes run it at once.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    state = load_state(root)
    if state.get("processes"):
        raise SystemExit(f"a cluster is already running in {root}; stop it first")
    state.setdefault("jwt_secret", secrets.token_urlsafe(48))
    start_postgres(root, state)
    env = _environment(root, state)
    prepared = subprocess.run([*CLI, "prepare"], env=env, capture_output=True, text=True,
                              check=False)
    if prepared.returncode != 0:
        stop(root, state)
        raise SystemExit(f"modelledger prepare failed:\n{prepared.stderr}{prepared.stdout}")
    ports = state.get("api_ports") or [_free_port() for _ in range(api_count)]
    state |= {"processes": {}, "api_ports": ports,
              "api_urls": [f"http://127.0.0.1:{port}" for port in ports]}
    processes: dict[str, int] = state["processes"]
    deadline = time.monotonic() + timeout

    def launch(name: str, args: list[str], ready: Callable[[], bool], **extra: str) -> None:
        processes[name] = _spawn(root, name, args, env | extra)
        save_state(root, state)  # so that `stop` finds it even if start-up fails later
        _wait(name, processes[name], ready, deadline)

    for index, (port, url) in enumerate(zip(ports, state["api_urls"], strict=True), 1):
        launch(f"api-{index}", ["serve", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "1", "--api-only"],
               functools.partial(_http_ok, f"{url}/health/live"), MODELLEDGER_BASE_URL=url)
    for index in range(1, worker_count + 1):
        beat = root / "run" / f"worker-{index}.heartbeat"
        beat.unlink(missing_ok=True)
        launch(f"worker-{index}", ["worker", "--heartbeat-file", str(beat)], beat.exists)
    log = root / "logs" / "scheduler.log"
    before = log.stat().st_size if log.exists() else 0
    launch("scheduler", ["scheduler"],
           lambda: b"scheduler running" in log.read_bytes()[before:])
    return state


def stop(root: Path, state: dict[str, Any] | None = None) -> None:
    """SIGTERM every service (SIGKILL after a grace period), then stop PostgreSQL."""
    state = state or load_state(root)
    pids = dict(state.get("processes", {}))
    for pid in pids.values():
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)  # its own session: the process and its children
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids.values():
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    state["processes"] = {}
    if "pg_dir" in state and (Path(state["pg_dir"]) / "data" / "PG_VERSION").exists():
        _pg_ctl(Path(state["pg_dir"]), "-m", "fast", "-w", "stop")
    save_state(root, state)


def destroy(root: Path) -> None:
    """Stop everything and delete the cluster's database and files."""
    state = load_state(root)
    if not root.exists():
        return
    stop(root, state)
    if "pg_dir" in state:
        shutil.rmtree(state["pg_dir"], ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def status(root: Path) -> dict[str, Any]:
    state = load_state(root)
    state["alive"] = {name: _alive(pid) for name, pid in state.get("processes", {}).items()}
    return state


def load_state(root: Path) -> dict[str, Any]:
    path = root / "cluster.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(root: Path, state: dict[str, Any]) -> None:
    path = root / "cluster.json"
    # It holds the JWT secret: owner-only from the moment it exists.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps(state, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the multi-process topology on one machine.")
    parser.add_argument("action", choices=["start", "stop", "status", "destroy"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default: {DEFAULT_DIR}")
    parser.add_argument("--apis", type=int, default=2, help="API replicas (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="projection workers (default 2)")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.action == "start":
        state = start(root, api_count=args.apis, worker_count=args.workers)
        shown = {k: v for k, v in state.items() if k != "jwt_secret"}
        sys.stdout.write(json.dumps(shown, indent=2) + "\n")
    elif args.action == "stop":
        stop(root)
    elif args.action == "destroy":
        destroy(root)
    else:
        shown = {k: v for k, v in status(root).items() if k != "jwt_secret"}
        sys.stdout.write(json.dumps(shown, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
