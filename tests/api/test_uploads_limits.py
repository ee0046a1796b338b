"""Upload limits: concurrent uploads and bytes in flight (503 before the body is read), a body
read timeout (408 through a real socket, the staging file removed), staging swept at start-up."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest
import uvicorn
from litestar.testing import TestClient

from api.app import create_app
from tests.api.conftest import MAX_UPLOAD, SECRET, bearer
from tests.conftest import make_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from litestar import Litestar

    from config.settings import Settings
    from services.container import Container

BOUNDARY = "limits-boundary"
IN_FLIGHT = 10_000  # bytes of uploads in progress at once
READ_TIMEOUT = 0.5
ANSWER_WITHIN = 5  # seconds: a refusal comes at once (an admitted upload would wait for ever)
# The limits do not depend on the backend: one is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(
        backend, tmp_path, request, jwt_secret=SECRET, max_upload_bytes=MAX_UPLOAD,
        max_concurrent_uploads=2, max_upload_bytes_in_flight=IN_FLIGHT,
        upload_read_timeout=READ_TIMEOUT,
    )


def _form(payload: bytes) -> tuple[bytes, bytes]:
    """A registration's multipart body, split where the file's bytes begin."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
        f"m-{uuid.uuid4().hex[:8]}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
        f'name="file"; filename="w.bin"\r\n\r\n'
    ).encode()
    return head, payload + f"\r\n--{BOUNDARY}--\r\n".encode()


class HeldUpload:
    """An upload whose client sends the form's first part, then waits until released."""

    def __init__(self, payload_bytes: int) -> None:
        self.head, self.tail = _form(b"x" * payload_bytes)
        self.release = asyncio.Event()
        self.started = False

    @property
    def length(self) -> int:
        return len(self.head) + len(self.tail)

    async def body(self) -> AsyncIterator[bytes]:
        self.started = True
        yield self.head
        await self.release.wait()
        yield self.tail


async def _post(client: httpx.AsyncClient, upload: HeldUpload) -> httpx.Response:
    return await client.post(
        "/api/models", content=upload.body(), headers={
            **bearer("alice"), "Content-Length": str(upload.length),
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )


@pytest.fixture
async def api(container: Container) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    app = create_app(container)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield app, client


async def _until_in_progress(app: Litestar, count: int) -> None:
    for _ in range(200):
        if app.state.uploads.active == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} uploads in progress")


def _assert_busy(response: httpx.Response, said: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) > 0
    assert said in response.json()["detail"]


async def test_an_upload_beyond_the_concurrent_maximum_gets_503_before_its_body_is_read(
    api: tuple[Litestar, httpx.AsyncClient],
) -> None:
    app, client = api
    first, second, third = HeldUpload(10), HeldUpload(10), HeldUpload(10)
    running = [asyncio.ensure_future(_post(client, u)) for u in (first, second)]
    await _until_in_progress(app, 2)

    refused = await asyncio.wait_for(_post(client, third), ANSWER_WITHIN)

    _assert_busy(refused, "uploads are in progress")
    assert not third.started  # refused on its headers: not a byte of its body was read
    first.release.set()
    second.release.set()
    assert [r.status_code for r in await asyncio.gather(*running)] == [201, 201]
    again = HeldUpload(10)
    again.release.set()
    assert (await _post(client, again)).status_code == 201  # the places were given back


async def test_an_upload_beyond_the_bytes_in_flight_gets_503_and_smaller_ones_still_fit(
    api: tuple[Litestar, httpx.AsyncClient],
) -> None:
    app, client = api
    large = HeldUpload(IN_FLIGHT // 2)
    running = asyncio.ensure_future(_post(client, large))
    await _until_in_progress(app, 1)
    small = HeldUpload(IN_FLIGHT // 4)
    small.release.set()
    assert (await _post(client, small)).status_code == 201  # large + small fit

    too_much = HeldUpload(IN_FLIGHT // 2)
    refused = await asyncio.wait_for(_post(client, too_much), ANSWER_WITHIN)

    _assert_busy(refused, "bytes")
    assert not too_much.started
    large.release.set()
    assert (await running).status_code == 201
    too_much = HeldUpload(IN_FLIGHT // 2)
    too_much.release.set()
    assert (await _post(client, too_much)).status_code == 201


async def test_one_upload_alone_is_admitted_whatever_its_size(
    api: tuple[Litestar, httpx.AsyncClient],
) -> None:
    _, client = api
    alone = HeldUpload(2 * IN_FLIGHT)  # more than the bytes bound, less than the largest file
    alone.release.set()

    assert (await _post(client, alone)).status_code == 201


async def test_a_refused_upload_gives_its_place_back(
    api: tuple[Litestar, httpx.AsyncClient],
) -> None:
    app, client = api
    for _ in range(3):  # more than the maximum of two in a row
        too_large = HeldUpload(MAX_UPLOAD + 1)
        too_large.release.set()
        assert (await _post(client, too_large)).status_code == 413
    assert app.state.uploads.active == 0
    assert app.state.uploads.reserved == 0


# -- the read timeout, through a real socket --------------------------------------------------


@pytest.fixture
async def server(container: Container) -> AsyncIterator[tuple[str, int]]:
    """The app served by uvicorn on a free local port, in this test's event loop."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(container), lifespan="on", log_config=None,
                            loop="asyncio")
    served = uvicorn.Server(config)
    task = asyncio.ensure_future(served.serve(sockets=[listener]))
    for _ in range(500):  # uvicorn offers no event to wait on
        if served.started:
            break
        await asyncio.sleep(0.01)
    yield listener.getsockname()
    served.should_exit = True
    await task


async def _stall(address: tuple[str, int], content_type: str, sent: bytes, length: int) -> bytes:
    """Send the headers and ``sent`` of a ``length``-byte body, then nothing: what comes back."""
    reader, writer = await asyncio.open_connection(*address)
    token = bearer("alice")["Authorization"]
    writer.write(
        f"POST /api/models HTTP/1.1\r\nHost: test\r\nAuthorization: {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode() + sent
    )
    await writer.drain()
    try:
        # The server answers and closes the connection (read until EOF); without a read
        # timeout it would wait for the rest of the body for ever.
        return await asyncio.wait_for(reader.read(), timeout=READ_TIMEOUT + 5)
    finally:
        writer.close()


def _problem(raw: bytes) -> tuple[str, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, msgspec.json.decode(body)


async def test_an_upload_that_stops_mid_body_gets_408_and_its_staging_file_is_removed(
    server: tuple[str, int], container: Container
) -> None:
    head, tail = _form(b"x" * 4096)
    began = time.monotonic()

    raw = await _stall(server, f"multipart/form-data; boundary={BOUNDARY}",
                       head + tail[:1000], len(head) + len(tail))

    status, headers, body = _problem(raw)
    assert status.startswith("HTTP/1.1 408"), raw
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    assert body["status"] == 408
    assert READ_TIMEOUT <= time.monotonic() - began < READ_TIMEOUT + 4
    assert list(container.artifacts.staging.iterdir()) == []  # the partial file is gone


async def test_a_json_registration_that_stops_mid_body_gets_408(
    server: tuple[str, int],
) -> None:
    raw = await _stall(server, "application/json", b'{"name": "slo', 100)

    status, _, body = _problem(raw)
    assert status.startswith("HTTP/1.1 408"), raw
    assert body["status"] == 408


# -- staging at start-up ----------------------------------------------------------------------


def test_the_app_sweeps_old_staging_files_when_it_starts(container: Container) -> None:
    old, fresh = container.artifacts.begin(), container.artifacts.begin()
    for upload in (old, fresh):
        upload.write(b"partial")
        upload.handle.close()
    an_hour_ago = time.time() - container.settings.upload_staging_max_age - 60
    os.utime(old.path, (an_hour_ago, an_hour_ago))

    with TestClient(create_app(container)):
        pass

    assert not old.path.exists()
    assert fresh.path.exists()

