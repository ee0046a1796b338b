"""Real processes for the fault tests: a throwaway PostgreSQL cluster and `modelledger serve`."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.pg import free_port, pg_binaries

ROOT = Path(__file__).resolve().parents[2]


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own (initdb + pg_ctl), so that a test may restart it."""

    def __init__(self) -> None:
        bindir = pg_binaries()
        if bindir is None:
            pytest.skip("no PostgreSQL server binaries (pg_ctl) to start a throwaway cluster")
        self.bindir = bindir
        # As root the server runs as postgres, which must reach the directory (not pytest's).
        self.root = Path(tempfile.mkdtemp(prefix="modelledger-faults-pg-"))
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.root, "postgres", "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            check=True, capture_output=True, timeout=120,
        )

    def start(self) -> None:
        subprocess.run(
            [*self.run_as, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
             "-A", "trust"],
            check=True, capture_output=True, timeout=120,
        )
        self.start_again()

    def stop(self) -> None:
        """Fast shutdown: every connection terminated; the data stays for ``start_again``."""
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")

    def start_again(self) -> None:
        self._pg_ctl(
            "-l", str(self.root / "log"), "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def restart(self) -> None:
        """Fast shutdown (every connection terminated) and start again; returns once it is up."""
        # -l again: without it the new server writes to (and holds open) our output pipe.
        self._pg_ctl("-m", "fast", "-l", str(self.root / "log"), "-w", "-t", "60", "restart")

    def destroy(self) -> None:
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "stop"],
            check=False, capture_output=True, timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def service_environment(
    data_dir: Path, database_url: str, schema: str, secret: str, port: int
) -> dict[str, str]:
    """`modelledger serve`'s settings: ours alone, none inherited from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLEDGER_")}
    return env | {
        "MODELLEDGER_DATA_DIR": str(data_dir),
        "MODELLEDGER_DATABASE_URL": database_url,
        "MODELLEDGER_PG_SCHEMA": schema,
        "MODELLEDGER_JWT_SECRET": secret,
        "MODELLEDGER_BASE_URL": f"http://127.0.0.1:{port}",
        "MODELLEDGER_PG_POOL_SIZE": "4",
        "MODELLEDGER_POLL_INTERVAL": "0.5",
        # The tests send hundreds of requests a second under one principal: limits are not
        # what they test.
        "MODELLEDGER_RATE_LIMIT_PER_MINUTE": "0",
        "MODELLEDGER_RATE_LIMIT_INGEST_PER_MINUTE": "0",
        "MODELLEDGER_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


class Service:
    """`modelledger serve` as a real process group (the server and its worker processes)."""

    def __init__(self, root: Path, database_url: str, schema: str, *, workers: int,
                 api_only: bool = False) -> None:
        self.root = root
        self.workers = workers
        self.api_only = api_only
        self.secret = secrets.token_urlsafe(48)  # HS256 needs 32 bytes or more
        self.port = free_port()  # kept across restarts: clients keep their URL
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = service_environment(root / "data", database_url, schema, self.secret,
                                       self.port)
        self.log = root / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelledger", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", str(self.workers),
                 *(["--api-only"] if self.api_only else [])],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._live():
            if self.process.poll() is not None:
                pytest.fail(f"serve exited during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"serve was not live within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _live(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/live", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def processes(self) -> list[int]:
        """The server and every process it started (uvicorn's workers)."""
        return descendants(self.pid)

    def kill(self) -> list[int]:
        """SIGKILL the server and every one of its processes at once; returns their ids."""
        assert self.process is not None
        pids = self.processes()
        os.killpg(self.pid, signal.SIGKILL)  # its own session: all of them in one signal
        self.process.wait(timeout=30)
        return pids

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found
