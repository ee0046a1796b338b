"""Real servers for the endpoint tests: the app under uvicorn on a port of its own, and
MLServer 1.7.1 (a V2 server we did not write) as an upstream, from a virtualenv of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import httpx
import pytest
import uvicorn
from filelock import FileLock

from tests.pg import free_port

if TYPE_CHECKING:
    from litestar import Litestar

ROOT = Path(__file__).resolve().parents[2]
MLSERVER_VERSION = "1.7.1"


class LiveServer:
    """``app`` served by uvicorn in a thread: real HTTP, real sockets, the real app."""

    def __init__(self, app: Litestar) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                lifespan="on", access_log=False,
                                proxy_headers=False)  # as `modelledger serve` runs
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def mlserver_python() -> Path:
    """The Python of a virtualenv with MLServer, made on first use (``.venv-mlserver``).

    MLServer brings FastAPI, gRPC and pinned libraries of its own: it lives beside this
    project's environment, not in it.
    """
    venv = Path(os.environ.get("MODELLEDGER_TEST_MLSERVER_VENV", ROOT / ".venv-mlserver"))
    python = venv / "bin" / "python"
    # Test workers run in parallel (pytest-xdist): one makes the environment, the others wait.
    with FileLock(f"{venv}.lock", timeout=1500):
        if not (venv / "bin" / "mlserver").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", f"mlserver=={MLSERVER_VERSION}",
                 f"mlserver-sklearn=={MLSERVER_VERSION}"],
                check=True, timeout=1200, capture_output=True,
            )
    return python


class MLServer:
    """MLServer serving the tests' logistic regression (benchmarks/mlserver_peer.py)."""

    def __init__(self, root: Path, name: str = "lr") -> None:
        self.root = root
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        python = mlserver_python()
        for attempt in range(3):
            if attempt:  # a port asked for was taken meanwhile (parallel test workers)
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
            if self._start(python):
                return self
        tail = (self.root / "mlserver.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"MLServer did not start:\n{tail}")

    def _start(self, python: Path) -> bool:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLEDGER_")}
        # It always starts gRPC and metrics servers too: free ports for them as well.
        with (self.root / "mlserver.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(python), str(ROOT / "benchmarks" / "mlserver_peer.py"), "--dir",
                 str(self.root / "repo"), "--port", str(self.port),
                 "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
                 "--name", self.name],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self.__exit__()
                return False
            time.sleep(0.2)
        return True

    def _ready(self) -> bool:
        try:
            url = f"{self.url}/v2/models/{self.name}/ready"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=20)
