"""Predictions never wait for the event store: with PostgreSQL down, `modelledger serve` keeps
answering infer calls and metering them on local disk; once it is back, the backlog ships and
every call is counted exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from tests.faults.processes import ROOT, Service, ThrowawayPostgres
from tests.faults.traffic import owner_token, upload_onnx_model
from tests.helpers import metric_sample
from tests.onnx_models import FEATURES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BODY = {"inputs": [{"name": "X", "shape": [1, FEATURES], "datatype": "FP32",
                    "data": [0.1] * FEATURES}]}


@pytest.fixture
def service(tmp_path: Path, postgres: ThrowawayPostgres) -> Iterator[Service]:
    serve = Service(tmp_path, postgres.url, "public", workers=2)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()


def test_infer_calls_are_answered_and_metered_while_postgres_is_down(
    service: Service, postgres: ThrowawayPostgres
) -> None:
    owner = {"Authorization": f"Bearer {owner_token(service.secret, 'alice')}"}
    with httpx.Client(base_url=service.url, timeout=30) as http:
        model = upload_onnx_model(http, owner)
        key = http.post("/api/keys", json={"name": "app", "models": None}, headers=owner).json()
        endpoint = f"/v2/models/{model['id']}/infer"
        caller = {"Authorization": f"Bearer {key['key']}"}

        def call(request_id: str) -> int:
            return http.post(endpoint, json={**BODY, "id": request_id},
                             headers=caller).status_code

        before = [call(f"before-{i}") for i in range(20)]
        postgres.stop()
        down_started = time.monotonic()
        during = [call(f"during-{i}") for i in range(40)]
        down_for = time.monotonic() - down_started
        retried = [call(f"during-{i}") for i in range(5)]  # retries of answered calls
        # The metrics page still answers, within a scraper's timeout (Prometheus: 10 s), and
        # shows what waits on disk to ship.
        scraped = time.monotonic()
        down_metrics = http.get("/metrics")
        scrape_took = time.monotonic() - scraped
        probed = time.monotonic()
        down_ready = http.get("/health/ready")  # unready, said before a probe's timeout
        probe_took = time.monotonic() - probed
        postgres.start_again()
        after = [call(f"after-{i}") for i in range(20)]

    assert before == [200] * 20
    assert during == [200] * 40, "predictions must not wait for the event store"
    assert retried == [200] * 5
    assert after == [200] * 20
    assert down_for < 30  # no call waited for PostgreSQL's connection timeout
    assert down_metrics.status_code == 200
    assert scrape_took < 10
    assert (down_ready.status_code, down_ready.json()["database"]) == (503, "unreachable")
    assert probe_took < 10
    assert metric_sample(down_metrics.text, "modelledger_metering_backlog_records") >= 45

    expected = 80  # the five retries are the same request ids: counted once
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with psycopg.connect(postgres.url) as conn:
            stored = conn.execute(
                "SELECT count(*), count(DISTINCT originator_id) FROM usageledger_events"
            ).fetchone()
        assert stored is not None
        if stored[0] >= expected:
            break
        time.sleep(0.5)
    assert stored == (expected, expected), service.log_tail()

    # The supervising process ships for its workers; /metrics (served by a worker) shows its
    # counter too: what was stored, the retries not counted again.
    metrics = httpx.get(f"{service.url}/metrics", timeout=30).text
    assert metric_sample(metrics, "modelledger_metering_shipped_total") == expected
    while metric_sample(metrics, "modelledger_metering_backlog_records") and (
        time.monotonic() < deadline
    ):  # the rows are deleted once their shipment committed
        time.sleep(0.5)
        metrics = httpx.get(f"{service.url}/metrics", timeout=30).text
    assert metric_sample(metrics, "modelledger_metering_backlog_records") == 0


def test_api_only_workers_only_record_and_their_supervisor_ships_every_call(
    tmp_path: Path, postgres: ThrowawayPostgres
) -> None:
    """The compose layout: `serve --workers 2 --api-only`, projections in `modelledger worker`."""
    service = Service(tmp_path, postgres.url, "public", workers=2, api_only=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "modelledger", "worker"], cwd=ROOT, env=service.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        service.start()
        owner = {"Authorization": f"Bearer {owner_token(service.secret, 'alice')}"}
        with httpx.Client(base_url=service.url, timeout=30) as http:
            model = upload_onnx_model(http, owner)
            key = http.post("/api/keys", json={"name": "app", "models": None},
                            headers=owner).json()
            caller = {"Authorization": f"Bearer {key['key']}"}
            deadline = time.monotonic() + 60  # the worker projects the model, then it serves
            while http.get(f"/v2/models/{model['id']}/ready",
                           headers=caller).status_code != 200:
                assert time.monotonic() < deadline, service.log_tail()
                time.sleep(0.2)
            statuses = [
                http.post(f"/v2/models/{model['id']}/infer", json={**BODY, "id": f"r-{i}"},
                          headers=caller).status_code
                for i in range(30)
            ]
            assert statuses == [200] * 30
            deadline = time.monotonic() + 60
            while (usage := http.get(f"/api/models/{model['id']}", headers=owner)
                   .json()["usage"])["total_requests"] < 30:
                assert time.monotonic() < deadline, service.log_tail()
                time.sleep(0.2)
        assert usage["total_requests"] == 30
    finally:
        service.stop()
        worker.terminate()
        worker.wait(timeout=20)
    spools = tmp_path / "data" / "spool"
    assert list(spools.glob("*.sqlite3")) == []  # shipped, and removed as each worker stopped
