"""The group-commit queue is bounded: beyond ``group_commit_max_queue`` waiting requests, single
ingest answers 503 with Retry-After, and every request that was let in is stored exactly once."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from modelledger.bootstrap import build
from tests.api.conftest import SECRET, assert_problem, bearer, usage
from tests.conftest import make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from services.container import Container
    from services.usage import Outcome, UsageRecord, Writer

BOUND = 2


@pytest.fixture
def bounded(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Container]:
    settings = make_settings(backend, tmp_path, request, jwt_secret=SECRET,
                             group_commit_max_queue=BOUND)
    container = build(settings)
    yield container
    container.close()


def test_requests_beyond_the_bound_get_503_and_the_others_are_stored_once(
    bounded: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, entered = threading.Event(), threading.Event()
    record_each = bounded.usage.record_each

    def slow_record_each(records: Sequence[UsageRecord], writers: Sequence[Writer]
                         ) -> list[Outcome]:
        entered.set()
        release.wait(timeout=30)  # a commit that takes until the test lets it finish
        return record_each(records, writers)

    monkeypatch.setattr(bounded.usage, "record_each", slow_record_each)
    alice = bearer(f"alice-{uuid.uuid4()}")
    with TestClient(create_app(bounded)) as client, ThreadPoolExecutor(4) as pool:
        model = client.post("/api/models", json={"name": "m", "framework": "onnx"},
                            headers=alice).json()
        url = f"/api/models/{model['id']}/usage"
        committer = client.app.state["group_commit"]
        admitted = [pool.submit(client.post, url, json=usage(f"r{i}"), headers=alice)
                    for i in range(BOUND)]
        deadline = time.monotonic() + 10
        while committer.waiting < BOUND:  # both wait: in the slow commit or queued behind it
            assert time.monotonic() < deadline, "the admitted requests never arrived"
            time.sleep(0.01)
        assert entered.is_set()
        refused = [client.post(url, json=usage(f"r{i}"), headers=alice)
                   for i in range(BOUND, BOUND + 3)]
        release.set()
        stored = [future.result(timeout=30) for future in admitted]
        for response in refused:
            assert_problem(response, 503)
            assert int(response.headers["retry-after"]) >= 1
        assert [r.status_code for r in stored] == [201] * BOUND
        assert committer.waiting == 0
        # The refused ones were not stored: their retry is fresh, and counted once.
        retried = [client.post(url, json=usage(f"r{i}"), headers=alice)
                   for i in range(BOUND + 3)]
        assert [r.json()["duplicate"] for r in retried] == [True] * BOUND + [False] * 3
        bounded.projector.catch_up("usage")
        detail = client.get(f"/api/models/{model['id']}", headers=alice).json()
        assert detail["request_count"] == BOUND + 3


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_bound_comes_from_the_setting(bounded: Container, backend: str) -> None:
    app: Any = create_app(bounded)
    assert app.state["group_commit"].max_queue == BOUND
