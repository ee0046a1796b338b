"""JSON logs: one object per line, from structlog and the standard library, with no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest
import structlog

from config.logging_setup import REDACTED, configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW5vdC1yZWFs"  # noqa: S105 - a fake token the log must mask


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_modelledger_json", False)]:
        root.removeHandler(handler)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_stdlib_and_structlog_records_are_json_objects(output: io.StringIO) -> None:
    logging.getLogger("modelledger.worker").info("leading projection %s", "usage", extra={"n": 3})
    structlog.get_logger("modelledger.jobs").info("compacted", events=10, models=2)
    first, second = lines(output)
    assert first["event"] == "leading projection usage"
    assert (first["level"], first["logger"], first["n"]) == ("info", "modelledger.worker", 3)
    assert "timestamp" in first
    assert second == second | {"event": "compacted", "events": 10, "models": 2, "level": "info"}


def test_tokens_and_bodies_never_reach_the_log(output: io.StringIO) -> None:
    log = structlog.get_logger("api")
    log.info("request", authorization=f"Bearer {TOKEN}", body=b'{"password": "x"}',
             headers={"Authorization": f"Bearer {TOKEN}", "accept": "json"}, jwt_secret="s3cret")  # noqa: S106
    logging.getLogger("uvicorn.error").warning("bad header Bearer %s", TOKEN)
    log.info(f"issued {TOKEN}")  # noqa: G004 - a careless caller
    text = output.getvalue()
    assert TOKEN not in text
    assert "s3cret" not in text
    assert "password" not in text
    request, warning, issued = lines(output)
    assert request["authorization"] == REDACTED
    assert request["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert "body" not in request
    assert warning["event"] == f"bad header Bearer {REDACTED}"
    assert issued["event"] == f"issued {REDACTED}"


def test_credentials_in_a_logged_url_are_masked(output: io.StringIO) -> None:
    access = logging.getLogger("uvicorn.access")
    access.propagate = True
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                "/ui/oidc/callback?code=c0de-Secret&state=st4te.Value&x=1", "1.1", 303)
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                "/ui/login/link?token=opaque-link-token", "1.1", 200)
    callback, link = lines(output)
    assert callback["event"] == (f'127.0.0.1:5000 - "GET /ui/oidc/callback?code={REDACTED}'
                                 f'&state={REDACTED}&x=1 HTTP/1.1" 303')
    assert link["event"] == f'127.0.0.1:5000 - "GET /ui/login/link?token={REDACTED} HTTP/1.1" 200'


def test_level_filters_records(output: io.StringIO) -> None:
    configure_logging("WARNING", stream=output)
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    assert [line["event"] for line in lines(output)] == ["shown"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="LOUD"):
        configure_logging("LOUD")


@pytest.mark.parametrize("flag", [None, "--access-log"])
def test_serve_logs_each_request_only_when_asked(tmp_path: Path, flag: str | None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MODELLEDGER_DATA_DIR": str(tmp_path), "MODELLEDGER_DATABASE_URL": ""}
    env.pop("MODELLEDGER_ACCESS_LOG", None)
    command = [sys.executable, "-m", "modelledger", "serve", "--port", str(port)]
    server = subprocess.Popen([*command, *([flag] if flag else [])], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
                break
            except httpx.TransportError:
                assert server.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "uvicorn.access"]
    assert any(r["logger"] == "uvicorn.error" for r in records)  # the server did log
    if flag:
        assert any("GET /health/live " in str(r["event"]) for r in access)
    else:
        assert access == []
