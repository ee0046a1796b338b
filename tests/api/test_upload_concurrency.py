"""A large upload does not hold the event loop: other requests are answered meanwhile."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from api.app import create_app
from services.artifacts import Upload

if TYPE_CHECKING:
    from services.container import Container

from tests.api.conftest import bearer

SLOW_WRITE = 0.3  # seconds per chunk: a slow disk


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_requests_are_answered_while_an_upload_waits_on_a_slow_disk(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = Upload.write

    def slow_write(self: Upload, chunk: bytes) -> None:
        time.sleep(SLOW_WRITE)
        write(self, chunk)

    monkeypatch.setattr(Upload, "write", slow_write)
    app: Any = create_app(container)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        began = time.monotonic()
        upload = asyncio.ensure_future(client.post(
            "/api/models", headers=bearer("alice", "models"), data={"name": "big"},
            files={"file": ("w.bin", b"x" * 1000)},
        ))
        await asyncio.sleep(0.05)  # the upload is writing by now
        live = await client.get("/health/live")
        answered_after = time.monotonic() - began
        created = await upload
    assert live.status_code == 200
    assert created.status_code == 201, created.text
    assert answered_after < SLOW_WRITE  # not queued behind the write
