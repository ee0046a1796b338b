"""Real ONNX models for tests, built in memory: a scikit-learn logistic regression converted
with skl2onnx, and one-node graphs (onnx.helper) for every tensor type."""

from __future__ import annotations

from functools import cache

import numpy as np
import onnx
from onnx import TensorProto, helper

FEATURES = 20
IR_VERSION = 8  # one the installed onnxruntime accepts
OPSET = 17


@cache
def logistic_regression(features: int = FEATURES, seed: int = 7) -> bytes:
    """A fitted 2-class logistic regression: input ``X`` FP32 [-1, features]; outputs
    ``label`` INT64 [-1] and ``probabilities`` FP32 [-1, 2]. Another ``seed`` fits it to other
    data: the same signature, other weights (a retrained version)."""
    from skl2onnx import to_onnx  # noqa: PLC0415 - slow import, only where needed
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression(max_iter=200).fit(x, y)
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=OPSET)
    onx.ir_version = IR_VERSION
    return bytes(onx.SerializeToString())


def identity(elem_type: int = TensorProto.FLOAT, shape: list[int | str] | None = None,
             *, name: str = "x", output: str = "y") -> bytes:
    """A one-node graph ``output = Identity(name)`` of one tensor type."""
    dims: list[int | str] = shape if shape is not None else ["n", 3]
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [output])],
        "identity",
        [helper.make_tensor_value_info(name, elem_type, dims)],
        [helper.make_tensor_value_info(output, elem_type, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def adder() -> bytes:
    """``z = a + b`` over FP32 [-1, 2]: two inputs, for name and shape checks."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["z"])],
        "adder",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return bytes(model.SerializeToString())
