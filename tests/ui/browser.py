"""The dashboard's test harness: the real app served by uvicorn on a free port (in a thread),
Debian's Chromium through Playwright, console-error collection and the axe-core scan."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from filelock import FileLock

from api.app import create_app
from api.tokens import issue_token
from api.ui.links import issue_link_token, link_key, login_url

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from services.container import Container

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SECRET = "ui-test-secret-long-enough-for-every-hmac-algorithm-0123456789"  # noqa: S105
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


def ensure_chromium() -> str | None:
    """The Chromium to drive: Debian's, installed with apt when missing and we are root.

    Returns None (the caller skips, or fails under MODELLEDGER_REQUIRE_BROWSER) when there is
    none and it cannot be installed.
    """
    if os.geteuid() == 0 and shutil.which("apt-get"):
        # Test workers run in parallel (pytest-xdist): one installs, the others wait for it;
        # the lock is taken even when the binary is there, which apt unpacks before it is done.
        with FileLock(Path(tempfile.gettempdir()) / "modelledger-chromium.lock", timeout=1900):
            if not CHROMIUM.exists():
                env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                subprocess.run(["apt-get", "update", "-q"], check=False,  # noqa: S607
                               env=env, capture_output=True, timeout=600)
                subprocess.run(["apt-get", "install", "-y", "-q", "chromium"],  # noqa: S607
                               check=False, env=env, capture_output=True, timeout=1200)
    return str(CHROMIUM) if CHROMIUM.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``create_app(container)`` under uvicorn in a thread of its own, until ``stop``."""

    def __init__(self, container: Container, port: int | None = None) -> None:
        self.container = container
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(container), host="127.0.0.1", port=self.port,
                                log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()),
                                       daemon=True)

    def start(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class User:
    subject: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Dashboard:
    """A running server and what tests do to it besides the browser: API calls and links."""

    server: Server
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.server.url, timeout=30)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def container(self) -> Container:
        return self.server.container

    def user(self, name: str = "", *scopes: str) -> User:
        subject = name or f"user-{uuid.uuid4().hex[:8]}"
        return User(subject, issue_token(SECRET, subject, scopes or ("models",)))

    def register(self, user: User, name: str, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/api/models", headers=user.headers,
                                  json={"name": name, "framework": "onnx", **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def register_with_file(self, user: User, name: str, content: bytes = b"weights-1",
                           framework: str = "pytorch") -> dict[str, Any]:
        """A model registered with its artifact: version 1."""
        response = self.http.post("/api/models", headers=user.headers,
                                  data={"name": name, "framework": framework},
                                  files={"file": ("w1.bin", content)})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def record_version_usage(self, user: User, model_id: str, version: int, count: int,
                             *, slow: bool = False, failures: int = 0) -> None:
        """``count`` requests of one version within the last hour."""
        now = datetime.now(UTC)
        records = [
            {"model_id": model_id, "request_id": f"v{version}-{uuid.uuid4().hex}",
             "response_time_ms": (40 if slow else 10) + i % 7, "input_bytes": 1,
             "output_bytes": 1, "success": i >= failures, "model_version": version,
             "occurred_at": (now - timedelta(seconds=5 + i)).isoformat()}
            for i in range(count)
        ]
        response = self.http.post("/api/usage/batch", headers=user.headers,
                                  json={"records": records})
        assert response.json()["accepted"] == count, response.text
        self.container.projector.catch_up_all()

    def record_usage(self, user: User, model_id: str, count: int, *, days: int = 1) -> None:
        """``count`` requests spread over the last ``days`` days (every ninth a failure)."""
        now = datetime.now(UTC)
        step = timedelta(days=days) / count
        records = [
            {"model_id": model_id, "request_id": f"req-{uuid.uuid4().hex}",
             "response_time_ms": 5 + (i * 37) % 300, "input_bytes": 100, "output_bytes": 50,
             "success": i % 9 != 0, "occurred_at": (now - i * step).isoformat()}
            for i in range(count)
        ]
        response = self.http.post("/api/usage/batch", headers=user.headers,
                                  json={"records": records})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == count, response.text
        self.container.projector.catch_up_all()

    def link(self, subject: str, scopes: tuple[str, ...] = ("models",)) -> str:
        return login_url(self.url, issue_link_token(link_key(SECRET), subject, scopes))

    def close(self) -> None:
        self.http.close()


class Console:
    """Errors a page logged (console.error, CSP violations, uncaught exceptions)."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def expect_only(self, *allowed: str) -> None:
        unexpected = [e for e in self.errors if not any(a in e for a in allowed)]
        assert not unexpected, unexpected


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now.

    The script is evaluated through the DevTools protocol, which the page's CSP does not
    govern: the page under test keeps its real policy.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;true")
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in {"serious", "critical"}
    ]


def sign_in(page: Page, dashboard: Dashboard, user: User) -> None:
    """Through the sign-in page, by keyboard: the token field, Tab to the button, Enter."""
    page.goto(f"{dashboard.url}/ui/login")
    page.fill("#token", user.token)
    page.focus("#token")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{dashboard.url}/ui/")
