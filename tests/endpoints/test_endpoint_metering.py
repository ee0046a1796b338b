"""Every infer call is recorded by the service itself, at the source, exactly once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.usage import PredictionUsage
from domain.usage_batch import UsageBatch
from tests.endpoints.conftest import World, eventually, key_header
from tests.helpers import stored_usage
from tests.onnx_models import FEATURES

BODY = {"inputs": [{"name": "X", "shape": [2, FEATURES], "datatype": "FP32",
                    "data": [0.25] * (2 * FEATURES)}]}


def recorded(live: World, model_id: str) -> list[PredictionUsage.Recorded]:
    return [e for e in stored_usage(live.container) if str(e.model_id) == model_id]


def _until(live: World, model_id: str, count: int) -> list[PredictionUsage.Recorded]:
    assert eventually(lambda: len(recorded(live, model_id)) >= count), recorded(live, model_id)
    return recorded(live, model_id)


def test_an_infer_call_is_recorded_with_what_the_endpoint_measured(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = alice.key()
    body: dict[str, Any] = {**BODY, "id": "call-1"}
    response = live.http.post(
        f"/v2/models/{model['id']}/infer", json=body,
        headers={**key_header(key), "User-Agent": "scorer/2.1"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "call-1"
    [event] = _until(live, model["id"], 1)
    assert event.request_id == "call-1"
    assert event.success is True
    assert event.status_code == 200
    assert event.rejected is False
    assert event.user_agent == "scorer/2.1"
    assert event.ip == "127.0.0.1"
    assert event.api_key_id == key["id"]
    assert event.caller == f"key:{key['id']}"
    assert event.input_bytes == len(response.request.content)
    assert event.output_bytes == len(response.content)
    assert 0 < event.response_time_ms < 10_000


def test_the_same_request_id_is_counted_once(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    headers = {**key_header(alice.key()), "X-Request-ID": "retry-me"}
    for _ in range(3):
        assert live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                              headers=headers).status_code == 200
    other = live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                           headers=key_header(alice.key()))
    assert other.status_code == 200
    generated = other.headers["x-request-id"]
    assert uuid.UUID(generated)
    events = _until(live, model["id"], 2)
    assert sorted(e.request_id for e in events) == sorted(["retry-me", generated])


def test_calls_without_a_request_id_ship_in_a_batch_and_named_ones_as_events_of_their_own(
    live: World,
) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = key_header(alice.key())
    url = f"/v2/models/{model['id']}/infer"
    generated = [live.http.post(url, json=BODY, headers=key).headers["x-request-id"]
                 for _ in range(4)]
    live.http.post(url, json={**BODY, "id": "v2-id"}, headers=key)
    live.http.post(url, json=BODY, headers={**key, "X-Request-ID": "header-id"})
    calls = _until(live, model["id"], 6)
    assert sorted(e.request_id for e in calls) == sorted([*generated, "v2-id", "header-id"])
    log = live.container.usage_log
    stored = [log.mapper.to_domain_event(n) for n in log.recorder.select_notifications(1, 10**9)]
    batched = [c.request_id for e in stored if isinstance(e, UsageBatch.Recorded)
               and str(e.model_id) == model["id"] for c in e.calls]
    singles = [e.request_id for e in stored if isinstance(e, PredictionUsage.Recorded)
               and str(e.model_id) == model["id"]]
    assert sorted(batched) == sorted(generated)
    assert sorted(singles) == ["header-id", "v2-id"]


def test_a_failed_call_is_recorded_as_a_failure_with_its_error(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    bad = {"inputs": [{"name": "wrong", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    response = live.http.post(f"/v2/models/{model['id']}/infer", json=bad,
                              headers=key_header(alice.key()))
    assert response.status_code == 400
    [event] = _until(live, model["id"], 1)
    assert (event.success, event.status_code, event.rejected) == (False, 400, False)
    assert event.error is not None
    assert "wrong" in event.error


def test_a_refused_call_is_recorded_as_rejected_usage(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = key_header(alice.key())
    assert alice.put(model["id"], status="inactive").status_code == 200
    assert eventually(lambda: live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                                             headers=key).status_code == 503, timeout=2.0)
    events = _until(live, model["id"], 1)
    assert all(e.rejected and e.status_code == 503 for e in events)


def test_calls_that_name_no_model_of_the_caller_are_not_recorded(live: World) -> None:
    alice, bob = live.user("alice"), live.user("bob")
    model = alice.register_onnx()
    assert live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                          headers=key_header(bob.key())).status_code == 404
    assert live.http.post(f"/v2/models/{model['id']}/infer", json=BODY).status_code == 401
    assert live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                          headers=key_header(alice.key())).status_code == 200
    assert len(_until(live, model["id"], 1)) == 1


def test_metadata_and_ready_calls_are_not_metered(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = key_header(alice.key())
    for route in ("", "/ready"):
        assert live.http.get(f"/v2/models/{model['id']}{route}", headers=key).status_code == 200
    assert live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                          headers=key).status_code == 200
    assert len(_until(live, model["id"], 1)) == 1


@pytest.mark.parametrize("endpoint_settings", [{"trusted_proxies": "127.0.0.1"}])
def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = key_header(alice.key())
    live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                   headers={**key, "X-Forwarded-For": "203.0.113.9, 127.0.0.1",
                            "X-Request-ID": "proxied"})
    [event] = _until(live, model["id"], 1)
    assert event.ip == "203.0.113.9"


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                   headers={**key_header(alice.key()), "X-Forwarded-For": "203.0.113.9"})
    [event] = _until(live, model["id"], 1)
    assert event.ip == "127.0.0.1"


def test_two_applications_whose_request_ids_agree_are_two_predictions(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    one, two = alice.key(name="one"), alice.key(name="two")
    for key in (one, two, one):  # the third is the first application's retry
        assert live.http.post(f"/v2/models/{model['id']}/infer", json=BODY,
                              headers={**key_header(key), "X-Request-ID": "1"}).status_code == 200
    events = _until(live, model["id"], 2)
    assert sorted(e.api_key_id for e in events) == sorted([one["id"], two["id"]])
    assert {e.request_id for e in events} == {"1"}
