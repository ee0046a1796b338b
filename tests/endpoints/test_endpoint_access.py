"""Who may call an endpoint, and what an endpoint answers in each state of its model."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.endpoints.conftest import World, eventually, key_header
from tests.onnx_models import FEATURES

BODY = {"inputs": [{"name": "X", "shape": [1, FEATURES], "datatype": "FP32",
                    "data": [0.5] * FEATURES}]}


def _infer(live: World, model_id: str, headers: dict[str, str], **extra: Any) -> Any:
    return live.http.post(f"/v2/models/{model_id}/infer", json=BODY, headers=headers, **extra)


def test_no_credential_or_a_wrong_key_is_401(live: World) -> None:
    model = live.user().register_onnx()
    assert _infer(live, model["id"], {}).status_code == 401
    forged = "mlk_" + "0" * 32 + "_" + "x" * 43
    response = _infer(live, model["id"], {"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert "error" in response.json()
    assert _infer(live, model["id"], {"Authorization": "Bearer not-a-token"}).status_code == 401


def test_the_owners_login_token_may_call_too(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    assert _infer(live, model["id"], alice.headers).status_code == 200


def test_another_users_model_or_one_the_key_does_not_cover_is_404_like_a_missing_one(
    live: World,
) -> None:
    alice, bob = live.user("alice"), live.user("bob")
    first, second = alice.register_onnx(), alice.register_onnx()
    narrow = key_header(alice.key(models=[first["id"]]))
    bobs = key_header(bob.key())
    missing = "00000000-0000-0000-0000-000000000000"
    assert _infer(live, first["id"], narrow).status_code == 200
    answers = [_infer(live, second["id"], narrow), _infer(live, first["id"], bobs),
               _infer(live, missing, narrow), _infer(live, first["id"], bob.headers)]
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    # The same words for each: nothing tells another user's model from a missing one.
    assert {a.json()["error"].replace(second["id"], "M").replace(first["id"], "M")
            .replace(missing, "M") for a in answers} == {"model M not found"}
    for route in ("", "/ready"):
        assert live.http.get(f"/v2/models/{first['id']}{route}", headers=bobs).status_code == 404


def test_a_key_for_all_models_covers_models_registered_after_it(live: World) -> None:
    alice = live.user()
    key = key_header(alice.key(models=None))
    later = alice.register_onnx()
    assert _infer(live, later["id"], key).status_code == 200


def test_a_revoked_key_stops_working_within_two_seconds(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = alice.key()
    assert _infer(live, model["id"], key_header(key)).status_code == 200
    revoked = live.http.delete(f"/api/keys/{key['id']}", headers=alice.headers)
    assert revoked.status_code == 204
    at = time.monotonic()
    assert eventually(lambda: _infer(live, model["id"], key_header(key)).status_code == 401,
                      timeout=2.0)
    assert time.monotonic() - at <= 2.0


def test_an_inactive_model_answers_503_and_again_200_once_reactivated(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = key_header(alice.key())
    assert alice.put(model["id"], status="inactive").status_code == 200
    assert eventually(lambda: _infer(live, model["id"], key).status_code == 503, timeout=2.0)
    assert live.http.get(f"/v2/models/{model['id']}/ready", headers=key).status_code == 503
    assert alice.put(model["id"], status="active").status_code == 200
    assert eventually(lambda: _infer(live, model["id"], key).status_code == 200, timeout=2.0)


def test_a_deleted_model_answers_404_like_a_missing_one(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    key = key_header(alice.key())
    assert live.http.delete(f"/api/models/{model['id']}", headers=alice.headers).status_code \
        == 204
    assert eventually(lambda: _infer(live, model["id"], key).status_code == 404, timeout=2.0)
    assert live.http.get(f"/v2/models/{model['id']}", headers=key).status_code == 404


def test_a_model_with_nothing_to_serve_is_not_ready_and_answers_503(live: World) -> None:
    alice = live.user()
    model = alice.register()  # no artifact, no upstream
    key = key_header(alice.key())
    assert live.http.get(f"/v2/models/{model['id']}/ready", headers=key).status_code == 503
    response = _infer(live, model["id"], key)
    assert response.status_code == 503
    assert "nothing to serve" in response.json()["error"]


def test_the_predict_alias_answers_like_infer(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    response = live.http.post(f"/predict/{model['id']}", json=BODY,
                              headers=key_header(alice.key()))
    assert response.status_code == 200
    assert {o["name"] for o in response.json()["outputs"]} == {"label", "probabilities"}


@pytest.mark.parametrize("route", ["/v2/health/live", "/v2/health/ready", "/v2"])
def test_health_and_server_metadata_need_no_credential(live: World, route: str) -> None:
    assert live.http.get(route).status_code == 200


def test_an_upload_onnxruntime_cannot_load_is_a_422_naming_file(live: World) -> None:
    alice = live.user()
    response = live.http.post(
        "/api/models", data={"name": "junk", "framework": "onnx"},
        files={"file": ("model.onnx", b"definitely not protobuf", "application/octet-stream")},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert "file" in {p["name"] for p in response.json()["invalid_params"]}
    assert str(live.container.settings.data_dir) not in response.text  # no server path
