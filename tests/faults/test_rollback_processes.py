"""A rollback reaches every process of `modelledger serve --workers 2` within two seconds, and no
call fails while it does (each call on a connection of its own, so both workers answer)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.faults.processes import Service
from tests.faults.traffic import owner_token, upload_onnx_model
from tests.onnx_models import FEATURES, logistic_regression

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BODY = {"inputs": [{"name": "X", "shape": [1, FEATURES], "datatype": "FP32",
                    "data": [0.1] * FEATURES}]}
LIMIT = 2.0  # seconds from the rollback's answer until every process serves the old version


def test_a_rollback_reaches_both_workers_within_two_seconds_and_no_call_fails(
    service: Service,
) -> None:
    owner = {"Authorization": f"Bearer {owner_token(service.secret, 'alice')}"}
    with httpx.Client(base_url=service.url, timeout=30) as http:
        model = upload_onnx_model(http, owner)
        retrained = http.post(
            f"/api/models/{model['id']}/versions",
            files={"file": ("m.onnx", logistic_regression(seed=8), "application/octet-stream")},
            headers=owner,
        )
        assert retrained.status_code == 201, retrained.text
        promoted = http.put(f"/api/models/{model['id']}", json={"serving": {"version": 2}},
                            headers=owner)
        assert promoted.status_code == 200, promoted.text
        key = http.post("/api/keys", json={"name": "app", "models": None}, headers=owner).json()
    url = f"{service.url}/v2/models/{model['id']}/infer"
    caller = {"Authorization": f"Bearer {key['key']}"}

    def call() -> tuple[float, int, str]:
        started = time.monotonic()
        try:  # a new connection each time: the kernel hands them to either worker
            answer = httpx.post(url, json=BODY, headers=caller, timeout=30)
        except httpx.HTTPError as error:
            return started, 0, repr(error)
        served = answer.json().get("model_version", "") if answer.status_code == 200 else ""
        return started, answer.status_code, served

    deadline = time.monotonic() + 10  # until both workers serve version 2
    while time.monotonic() < deadline and {call()[2] for _ in range(20)} != {"2"}:
        time.sleep(0.1)

    calls: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            calls.append(call())

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    rolled_back = httpx.put(f"{service.url}/api/models/{model['id']}",
                            json={"serving": {"version": 1}}, headers=owner, timeout=30)
    answered = time.monotonic()
    time.sleep(LIMIT + 2.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert rolled_back.status_code == 200, rolled_back.text
    failed = [c for c in calls if c[1] != 200]
    assert not failed, failed[:5]
    assert {served for started, _, served in calls if started < answered - 0.5} == {"2"}
    late = [served for started, _, served in calls if started > answered + LIMIT]
    assert len(late) >= 20, f"too few calls after {LIMIT} s: {len(late)} of {len(calls)}"
    assert set(late) == {"1"}
