"""A real V2 client (Triton's ``tritonclient.http``, default settings: binary tensors) talks to
a model's endpoint as to any Open Inference Protocol server."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from onnx import TensorProto
from tritonclient.utils import InferenceServerException

from tests.endpoints.conftest import World, key_header
from tests.onnx_models import FEATURES, identity, logistic_regression


def _client(world: World) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(world.url.removeprefix("http://"))


def _expected(x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(logistic_regression(), providers=["CPUExecutionProvider"])
    return list(session.run(None, {"X": x}))


def _features(rows: int = 3) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(rows, FEATURES)).astype(np.float32)


def test_server_health_and_metadata_answer_as_the_protocol_says(live: World) -> None:
    client = _client(live)
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "modelledger"
    assert "binary_tensor_data" in metadata["extensions"]


def test_an_uploaded_onnx_model_answers_infer_with_its_own_predictions(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    assert model["endpoint"]["url"].endswith(f"/v2/models/{model['id']}")
    key = alice.key()
    client = _client(live)
    headers = key_header(key)
    assert client.is_model_ready(model["id"], headers=dict(headers))

    metadata = client.get_model_metadata(model["id"], headers=dict(headers))
    assert metadata["name"] == model["id"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert {i["name"]: (i["datatype"], i["shape"]) for i in metadata["inputs"]} == {
        "X": ("FP32", [-1, FEATURES]),
    }
    assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities"}

    x = _features()
    tensor = triton.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)  # binary by default, as Triton's client sends
    result = client.infer(model["id"], [tensor], headers=dict(headers), request_id="req-1")
    label, probabilities = _expected(x)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)
    assert result.get_response()["id"] == "req-1"


def test_json_tensors_and_a_chosen_output_work_too(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    headers = key_header(alice.key())
    x = _features(2)
    tensor = triton.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
    result = _client(live).infer(model["id"], [tensor], outputs=[wanted], headers=dict(headers))
    np.testing.assert_allclose(result.as_numpy("probabilities"), _expected(x)[1], rtol=1e-6)
    assert result.as_numpy("label") is None


@pytest.mark.parametrize(("elem_type", "datatype", "values"), [
    (TensorProto.STRING, "BYTES", np.array([[b"a", b"bc", b""]], dtype=np.object_)),
    (TensorProto.INT64, "INT64", np.array([[1, -2, 3]], dtype=np.int64)),
    (TensorProto.BOOL, "BOOL", np.array([[True, False, True]])),
    (TensorProto.FLOAT16, "FP16", np.array([[0.5, -1.0, 2.0]], dtype=np.float16)),
    (TensorProto.UINT8, "UINT8", np.array([[0, 7, 255]], dtype=np.uint8)),
    (TensorProto.DOUBLE, "FP64", np.array([[0.25, 1e300, -3.0]])),
])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_goes_through_both_ways(
    live: World, elem_type: int, datatype: str, values: np.ndarray, *, binary: bool
) -> None:
    alice = live.user()
    model = alice.register_onnx(identity(elem_type))
    headers = key_header(alice.key())
    tensor = triton.InferInput("x", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    wanted = triton.InferRequestedOutput("y", binary_data=binary)
    result = _client(live).infer(model["id"], [tensor], outputs=[wanted], headers=dict(headers))
    got = result.as_numpy("y")
    assert got is not None
    if datatype == "BYTES" and not binary:  # tritonclient reads JSON strings as str
        got = np.vectorize(str.encode, otypes=[object])(got)
    np.testing.assert_array_equal(got, values)


def _error_of(live: World, model_id: str, headers: dict[str, str], **tensor: Any) -> str:
    spec = {"name": "X", "shape": [1, FEATURES], "datatype": "FP32",
            "data": [0.0] * FEATURES, **tensor}
    response = live.http.post(f"/v2/models/{model_id}/infer", json={"inputs": [spec]},
                              headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    return str(response.json()["error"])


def test_a_wrong_input_name_datatype_or_shape_is_a_400_naming_it(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    headers = key_header(alice.key())
    assert "Z" in _error_of(live, model["id"], headers, name="Z")
    assert "FP64" in _error_of(live, model["id"], headers, datatype="FP64")
    assert "shape" in _error_of(live, model["id"], headers, shape=[1, FEATURES + 1],
                                data=[0.0] * (FEATURES + 1))
    assert "data" in _error_of(live, model["id"], headers, data=[0.0] * 3)
    broken = live.http.post(f"/v2/models/{model['id']}/infer", content=b"{not json",
                            headers={**headers, "content-type": "application/json"})
    assert broken.status_code == 400
    assert "error" in broken.json()


def test_the_client_library_sees_protocol_errors_as_errors(live: World) -> None:
    alice = live.user()
    model = alice.register_onnx()
    tensor = triton.InferInput("nope", [1, FEATURES], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, FEATURES), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="nope"):
        _client(live).infer(model["id"], [tensor], headers=dict(key_header(alice.key())))
