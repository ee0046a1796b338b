"""Usage ingest (idempotent, group-committed) and usage statistics per window."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.api.conftest import Headers, assert_problem, signed, usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from services.container import Container


def test_recording_twice_succeeds_and_counts_once(
    client: TestClient[Any],
    alice: Headers,
    register: Callable[..., dict[str, Any]],
    container: Container,
) -> None:
    model = register(alice)
    url = f"/api/models/{model['id']}/usage"
    first = client.post(url, json=usage("req-1"), headers=alice)
    again = client.post(url, json=usage("req-1"), headers=alice)
    assert (first.status_code, first.json()["duplicate"]) == (201, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    container.projector.catch_up("usage")
    assert client.get(f"/api/models/{model['id']}", headers=alice).json()["request_count"] == 1


def test_concurrent_retries_are_counted_once(
    client: TestClient[Any],
    alice: Headers,
    register: Callable[..., dict[str, Any]],
    container: Container,
) -> None:
    model = register(alice)
    url = f"/api/models/{model['id']}/usage"
    request_ids = [f"req-{i}" for i in range(40)] * 4  # every request sent four times at once
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda r: client.post(url, json=usage(r), headers=alice),
                                  request_ids))
    assert {r.status_code for r in responses} <= {200, 201}
    assert sum(not r.json()["duplicate"] for r in responses) == 40
    container.projector.catch_up("usage")
    detail = client.get(f"/api/models/{model['id']}", headers=alice).json()
    assert detail["usage"]["total_requests"] == 40


def test_invalid_usage_answers_422_naming_the_field(
    client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
) -> None:
    model = register(alice)
    url = f"/api/models/{model['id']}/usage"
    assert_problem(client.post(url, json=usage("r", response_time_ms=-1), headers=alice), 422,
                   "response_time_ms")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert_problem(client.post(url, json=usage("r", occurred_at=future), headers=alice), 422,
                   "occurred_at")


def test_a_gateway_token_for_all_tenants_may_record_for_any_model(
    client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
) -> None:
    model = register(alice)
    gateway = signed(sub="gateway", scope="usage:write", usage_all_tenants=True)
    response = client.post(f"/api/models/{model['id']}/usage", json=usage("g1"), headers=gateway)
    assert response.status_code == 201
    record = {**usage("g2"), "model_id": model["id"]}
    result = client.post("/api/usage/batch", json={"records": [record]}, headers=gateway).json()
    assert result == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_batch_reports_accepted_duplicates_and_rejected(
    client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
) -> None:
    model = register(alice)
    records = [{**usage(f"b{i}"), "model_id": model["id"]} for i in range(5)]
    records.append({**usage("bad", input_bytes=-5), "model_id": model["id"]})
    records.append({**usage("x"), "model_id": str(uuid.uuid4())})
    first = client.post("/api/usage/batch", json={"records": records}, headers=alice).json()
    assert (first["accepted"], first["duplicates"]) == (5, 0)
    assert [r["index"] for r in first["rejected"]] == [5, 6]
    assert "input_bytes" in first["rejected"][0]["error"]
    again = client.post("/api/usage/batch", json={"records": records[:5]}, headers=alice).json()
    assert (again["accepted"], again["duplicates"]) == (0, 5)


def test_batch_over_10000_records_answers_400(client: TestClient[Any], alice: Headers) -> None:
    record = {**usage("r"), "model_id": str(uuid.uuid4())}
    assert_problem(client.post("/api/usage/batch", json={"records": [record] * 10_001},
                               headers=alice), 400)


def test_daily_series_in_a_time_zone(
    client: TestClient[Any],
    alice: Headers,
    register: Callable[..., dict[str, Any]],
    container: Container,
) -> None:
    model = register(alice)
    now = datetime.now(UTC) - timedelta(minutes=1)
    records = [{**usage(f"d{i}", occurred_at=(now - timedelta(days=i)).isoformat(),
                        response_time_ms=10.0 * (i + 1), success=i != 1), "model_id": model["id"]}
               for i in range(3)]
    client.post("/api/usage/batch", json={"records": records}, headers=alice)
    container.projector.catch_up("usage")
    series = client.get(f"/api/models/{model['id']}/usage",
                        params={"window": "day", "tz": "Europe/Berlin",
                                "from": (now - timedelta(days=5)).isoformat(),
                                "to": (now + timedelta(hours=1)).isoformat()},
                        headers=alice).json()
    assert series["window"] == "day"
    assert series["tz"] == "Europe/Berlin"
    assert sum(b["requests"] for b in series["buckets"]) == 3
    assert sum(b["failures"] for b in series["buckets"]) == 1
    assert all(b["start"] < b["end"] for b in series["buckets"])
    assert len(series["buckets"]) in {6, 7}


def test_default_windows_cover_the_documented_spans(
    client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
) -> None:
    model = register(alice)
    url = f"/api/models/{model['id']}/usage"
    counts = {w: len(client.get(url, params={"window": w}, headers=alice).json()["buckets"])
              for w in ("hour", "day", "week", "month")}
    assert counts["hour"] in {24, 25}
    assert counts["day"] in {30, 31}
    assert counts["week"] in {12, 13}
    assert counts["month"] in {12, 13}


def test_bad_windows_answer_400_naming_the_parameter(
    client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
) -> None:
    url = f"/api/models/{register(alice)['id']}/usage"
    assert_problem(client.get(url, params={"tz": "Mars/Base"}, headers=alice), 400, "tz")
    backwards = {"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}
    assert_problem(client.get(url, params=backwards, headers=alice), 400, "from")
    assert_problem(client.get(url, params={"window": "hour", "from": "2020-01-01T00:00:00Z",
                                           "to": "2024-01-01T00:00:00Z"}, headers=alice), 400, "to")
    assert_problem(client.get(url, params={"window": "year"}, headers=alice), 400)


def test_summary_totals_and_breaks_down_per_model(
    client: TestClient[Any],
    alice: Headers,
    register: Callable[..., dict[str, Any]],
    container: Container,
) -> None:
    first, second = register(alice, "one"), register(alice, "two")
    records = [{**usage(f"s{i}"), "model_id": m["id"]}
               for i, m in enumerate([first, second, second])]
    client.post("/api/usage/batch", json={"records": records}, headers=alice)
    container.projector.catch_up("usage")
    summary = client.get("/api/usage/summary", params={"window": "hour"}, headers=alice).json()
    assert summary["totals"]["total_requests"] == 3
    per_model = {m["name"]: m["usage"]["total_requests"] for m in summary["models"]}
    assert per_model == {"one": 1, "two": 2}
    assert sum(b["requests"] for b in summary["buckets"]) == 3
