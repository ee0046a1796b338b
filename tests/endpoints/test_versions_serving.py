"""A model's versions at its endpoint: a weighted split routes by request id and sticks, a
rollback reaches every call within 2 s under load with no call failing, and a version's own
routes reach that version alone, for its owner only."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.endpoints.conftest import World, eventually, key_header
from tests.onnx_models import FEATURES, logistic_regression

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.endpoints.conftest import User

RETRAINED = 8  # the seed of version 2: the same signature, other weights
MISSING = "00000000-0000-0000-0000-000000000000"
ROW = [0.25] * FEATURES
CALLS = 4_000  # the split test's calls (10,000 took a minute per backend on a slow day)


def _body(request_id: str | None = None, rows: list[list[float]] | None = None) -> dict[str, Any]:
    data = rows if rows is not None else [ROW]
    body: dict[str, Any] = {"inputs": [{
        "name": "X", "shape": [len(data), FEATURES], "datatype": "FP32",
        "data": [value for row in data for value in row],
    }]}
    if request_id is not None:
        body["id"] = request_id
    return body


def _upload(user: User, model_id: str, content: bytes, notes: str = "") -> dict[str, Any]:
    response = user.world.http.post(
        f"/api/models/{model_id}/versions", data={"notes": notes},
        files={"file": ("retrained.onnx", content, "application/octet-stream")},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _with_two_versions(live: World) -> tuple[User, dict[str, Any], dict[str, str]]:
    """Alice's ONNX model with version 1 (registered) and version 2 (uploaded, not serving)."""
    alice = live.user()
    model = alice.register_onnx()
    version = _upload(alice, model["id"], logistic_regression(seed=RETRAINED), "retrained")
    assert (version["number"], version["serving_weight"], version["notes"]) == (2, 0, "retrained")
    return alice, model, key_header(alice.key())


def _serves(live: World, model_id: str, headers: dict[str, str], *versions: int) -> bool:
    """Whether the endpoint's serving state names these versions (read through metadata, which
    shares the infer route's cached state and, unlike infer, is not metered)."""
    answer = live.http.get(f"/v2/models/{model_id}", headers=headers)
    return answer.status_code == 200 and sorted(answer.json()["versions"]) == sorted(
        str(v) for v in versions)


def _promote(user: User, model_id: str, serving: object, headers: dict[str, str],
             *versions: int) -> None:
    answer = user.put(model_id, serving=serving)
    assert answer.status_code == 200, answer.text
    assert sorted(s["version"] for s in answer.json()["serving"]) == sorted(versions)
    assert eventually(lambda: _serves(user.world, model_id, headers, *versions), timeout=3.0)


def _served_counts(user: User, model_id: str) -> dict[int, int]:
    """Requests per version in the usage API (``group_by=version``), summed over buckets."""
    answer = user.world.http.get(f"/api/models/{model_id}/usage?group_by=version",
                                 headers=user.headers)
    assert answer.status_code == 200, answer.text
    return {entry["version"]: sum(b["requests"] for b in entry["buckets"])
            for entry in answer.json()["by_version"]}


def _predictions(content: bytes, rows: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    return list(session.run(None, {"X": rows}))


def _in_pool(threads: int, work: Callable[[str], tuple[int, str]], ids: list[str],
             ) -> list[tuple[int, str]]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, ids))


def test_a_split_routes_close_to_its_weights_and_sticks_per_request_id(live: World) -> None:
    alice, model, headers = _with_two_versions(live)
    _promote(alice, model["id"], [{"version": 1, "weight": 30}, {"version": 2, "weight": 70}],
             headers, 1, 2)
    url = f"/v2/models/{model['id']}/infer"
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    with httpx.Client(base_url=live.url, timeout=30, limits=limits) as http:

        def call(request_id: str) -> tuple[int, str]:
            answer = http.post(url, json=_body(request_id), headers=headers)
            version = answer.json().get("model_version", "") if answer.status_code == 200 else ""
            return answer.status_code, version

        ids = [f"split-{i}" for i in range(CALLS)]
        first = _in_pool(16, call, ids)
        assert {status for status, _ in first} == {200}
        served = dict(zip(ids, (version for _, version in first), strict=True))
        counted = Counter(served.values())
        # 4,000 independent draws at p = 0.3: sd = sqrt(0.3 * 0.7 / 4,000) ≈ 0.72 pp, so
        # ±3.5 pp is 4.8 sd: a fair router fails this about once in 600,000 runs.
        assert set(counted) == {"1", "2"}
        assert abs(counted["1"] / CALLS - 0.30) <= 0.035, counted
        assert abs(counted["2"] / CALLS - 0.70) <= 0.035, counted

        sample = ids[::20]  # 200 of them, sent again: each reaches the version it reached
        again = _in_pool(16, call, sample)
        assert again == [(200, served[i]) for i in sample]

    # A request id is counted once (its repeats are duplicates), so the usage per version is
    # exactly what the first pass counted.
    expected = {int(v): n for v, n in counted.items()}
    seen: dict[int, int] = {}

    def counts_match() -> bool:
        seen.clear()
        seen.update(_served_counts(alice, model["id"]))
        return seen == expected

    assert eventually(counts_match, timeout=60.0), (seen, expected)
    detail = live.http.get(f"/api/models/{model['id']}", headers=alice.headers).json()
    assert {v["version"]: v["usage"]["total_requests"]
            for v in detail["usage_by_version"]} == expected
    assert detail["usage"]["total_requests"] == CALLS


def test_a_rollback_under_load_fails_no_call_and_reaches_every_call_within_2_s(
    live: World,
) -> None:
    alice, model, headers = _with_two_versions(live)
    _promote(alice, model["id"], {"version": 2}, headers, 2)
    url = f"/v2/models/{model['id']}/infer"
    calls: list[tuple[float, int, str]] = []  # (started, status, model_version)
    lock = threading.Lock()
    begin = time.monotonic()
    end = begin + 4.5

    def load(http: httpx.Client) -> None:
        while (started := time.monotonic()) < end:
            try:
                answer = http.post(url, json=_body(), headers=headers)
                status = answer.status_code
                version = answer.json().get("model_version", "") if status == 200 else ""
            except httpx.HTTPError as error:  # a dropped connection is a failed call too
                status, version = 0, repr(error)
            with lock:
                calls.append((started, status, version))

    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    with httpx.Client(base_url=live.url, timeout=30, limits=limits) as http:
        threads = [threading.Thread(target=load, args=(http,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        put_sent = time.monotonic()
        answer = alice.put(model["id"], serving={"version": 1})
        put_answered = time.monotonic()
        for thread in threads:
            thread.join(timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["serving"] == [{"version": 1, "weight": 100}]

    failed = [c for c in calls if c[1] != 200]
    assert not failed, failed[:5]
    before = [v for started, _, v in calls if started < put_sent]
    # The 2 s count from the PUT's answer: the change exists once it is acknowledged.
    late = [v for started, _, v in calls if started > put_answered + 2.0]
    assert before, "no call ran before the rollback"
    assert set(before) == {"2"}
    assert len(late) >= 20, f"too few calls after the 2 s: {len(late)} of {len(calls)}"
    assert set(late) == {"1"}


def test_a_versions_routes_reach_it_whatever_serves_and_only_for_its_owner(
    live: World,
) -> None:
    alice, model, headers = _with_two_versions(live)
    model_id = model["id"]
    shown = live.http.get(f"/api/models/{model_id}", headers=alice.headers).json()
    assert (shown["serving"], shown["latest_version"]) == ([{"version": 1, "weight": 100}], 2)
    rows = np.random.default_rng(3).normal(size=(3, FEATURES)).astype(np.float32)
    expected = {1: _predictions(logistic_regression(), rows),
                2: _predictions(logistic_regression(seed=RETRAINED), rows)}
    assert not np.allclose(expected[1][1], expected[2][1])  # the versions tell apart

    def infer(route: str) -> dict[str, Any]:
        answer = live.http.post(f"/v2/models/{model_id}{route}/infer",
                                json=_body(rows=rows.tolist()), headers=headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def assert_answered_by(answer: dict[str, Any], version: int) -> None:
        assert answer["model_version"] == str(version)
        outputs = {o["name"]: o["data"] for o in answer["outputs"]}
        np.testing.assert_array_equal(outputs["label"], expected[version][0])
        np.testing.assert_allclose(np.reshape(outputs["probabilities"], (-1, 2)),
                                   expected[version][1], rtol=1e-6)

    assert_answered_by(infer(""), 1)
    assert_answered_by(infer("/versions/2"), 2)
    assert_answered_by(infer("/versions/1"), 1)
    _promote(alice, model_id, {"version": 2}, headers, 2)
    assert_answered_by(infer(""), 2)
    assert_answered_by(infer("/versions/1"), 1)

    for number in (1, 2):
        metadata = live.http.get(f"/v2/models/{model_id}/versions/{number}", headers=headers)
        assert metadata.status_code == 200, metadata.text
        assert metadata.json()["name"] == model_id
        assert metadata.json()["versions"] == [str(number)]
        assert [i["name"] for i in metadata.json()["inputs"]] == ["X"]
        ready = live.http.get(f"/v2/models/{model_id}/versions/{number}/ready", headers=headers)
        assert (ready.status_code, ready.json()["ready"]) == (200, True)

    def refusals(target: str, caller: dict[str, str]) -> list[httpx.Response]:
        base = f"/v2/models/{target}/versions"
        return [live.http.post(f"{base}/1/infer", json=_body(), headers=caller),
                live.http.get(f"{base}/1", headers=caller),
                live.http.get(f"{base}/1/ready", headers=caller)]

    for route in ("/3/infer", "/3", "/3/ready", "/0/infer"):
        method = live.http.post if route.endswith("infer") else live.http.get
        kwargs: dict[str, Any] = {"json": _body()} if route.endswith("infer") else {}
        answer = method(f"/v2/models/{model_id}/versions{route}", headers=headers, **kwargs)
        assert answer.status_code == 404, (route, answer.text)
        assert answer.headers["content-type"].startswith("application/json")
        assert isinstance(answer.json()["error"], str)

    anonymous = live.http.post(f"/v2/models/{model_id}/versions/1/infer", json=_body())
    assert anonymous.status_code == 401, anonymous.text
    bob = live.user("bob")
    other = alice.register_onnx()
    narrow = key_header(alice.key(models=[other["id"]]))
    missing = refusals(MISSING, headers)
    for answer in [*refusals(model_id, key_header(bob.key())), *refusals(model_id, bob.headers),
                   *refusals(model_id, narrow), *missing]:
        assert answer.status_code == 404, answer.text
        # The same words as a missing model's: nothing tells another user's model apart.
        assert answer.json()["error"].replace(model_id, "M").replace(MISSING, "M") == (
            "model M not found")


def test_the_v2_client_library_calls_a_version_and_the_call_is_metered_as_it(
    live: World,
) -> None:
    alice, model, headers = _with_two_versions(live)
    model_id = model["id"]
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    # tritonclient adds a header to the dict it is given: each call gets a copy.
    assert client.is_model_ready(model_id, model_version="2", headers=dict(headers))
    assert not client.is_model_ready(model_id, model_version="3", headers=dict(headers))
    metadata = client.get_model_metadata(model_id, model_version="2", headers=dict(headers))
    assert metadata["versions"] == ["2"]

    rows = np.random.default_rng(5).normal(size=(4, FEATURES)).astype(np.float32)
    tensor = triton.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)  # binary, as the library sends by default
    result = client.infer(model_id, [tensor], model_version="2", headers=dict(headers),
                          request_id="triton-v2")
    assert result.get_response()["model_version"] == "2"
    label, probabilities = _predictions(logistic_regression(seed=RETRAINED), rows)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)
    with pytest.raises(InferenceServerException, match="has no version 3"):
        client.infer(model_id, [tensor], model_version="3", headers=dict(headers))

    # The version route's call is metered as version 2, though version 1 serves the model.
    assert eventually(lambda: _served_counts(alice, model_id) == {2: 1},
                      timeout=15.0)
    only = live.http.get(f"/api/models/{model_id}/usage?version=1", headers=alice.headers)
    assert only.status_code == 200, only.text
    assert only.json()["version"] == 1
    assert sum(b["requests"] for b in only.json()["buckets"]) == 0
