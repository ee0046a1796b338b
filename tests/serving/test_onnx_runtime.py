"""ONNX models in-process: signatures, input checks, real inference with onnxruntime, and the
session cache (one load shared, failures not kept, LRU by bytes, cold loads beside hot models)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from serving.onnx_runtime import (
    LoadedModel,
    ModelLoadError,
    SessionCache,
    Signature,
    TensorSpec,
    load_model,
)
from serving.v2_protocol import InferRequest, V2Error, decode_infer_request, dtype_of
from tests.onnx_models import FEATURES, adder, identity, logistic_regression

Write = Callable[[str, bytes], Path]
Models = dict[str, Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def write(name: str, model: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(model)
        return path
    return write


def request(*inputs: tuple[str, str, list[int], list[Any]], **fields: Any) -> InferRequest:
    """A JSON infer request through the real codec."""
    tensors = [{"name": n, "datatype": d, "shape": s, "data": v} for n, d, s, v in inputs]
    header = {"inputs": tensors, **fields}
    return decode_infer_request(json.dumps(header).encode(), None)


def refusal(model: LoadedModel, infer: InferRequest) -> str:
    with pytest.raises(V2Error) as caught:
        model.run(model.prepare(infer), infer.output_names)
    assert caught.value.status == 400
    return caught.value.message


def reference_probabilities(model: bytes, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """P(class) from the LinearClassifier's own weights, in numpy: no onnxruntime involved."""
    (node,) = onnx.load_from_string(model).graph.node
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attributes["post_transform"] == b"LOGISTIC"
    weights = np.array(attributes["coefficients"], dtype=np.float64).reshape(2, -1)
    scores = x.astype(np.float64) @ weights.T + np.array(attributes["intercepts"])
    probabilities: np.ndarray[Any, Any] = 1 / (1 + np.exp(-scores))
    return probabilities


class TestSignature:
    def test_logistic_regression_signature(self, write: Write) -> None:
        model = load_model(write("lr.onnx", logistic_regression()))
        assert model.signature == Signature(
            inputs=(TensorSpec("X", "FP32", (-1, FEATURES)),),
            outputs=(TensorSpec("label", "INT64", (-1,)),
                     TensorSpec("probabilities", "FP32", (-1, 2))))

    def test_size_is_the_files(self, write: Write) -> None:
        path = write("lr.onnx", logistic_regression())
        assert load_model(path).size_bytes == path.stat().st_size

    @pytest.mark.parametrize(("elem_type", "datatype"), [
        (TensorProto.BOOL, "BOOL"), (TensorProto.UINT8, "UINT8"), (TensorProto.UINT16, "UINT16"),
        (TensorProto.UINT32, "UINT32"), (TensorProto.UINT64, "UINT64"),
        (TensorProto.INT8, "INT8"), (TensorProto.INT16, "INT16"), (TensorProto.INT32, "INT32"),
        (TensorProto.INT64, "INT64"), (TensorProto.FLOAT16, "FP16"),
        (TensorProto.FLOAT, "FP32"), (TensorProto.DOUBLE, "FP64"), (TensorProto.STRING, "BYTES"),
    ])
    def test_onnx_types_map_to_v2_datatypes(
        self, write: Write, elem_type: int, datatype: str
    ) -> None:
        model = load_model(write("id.onnx", identity(elem_type, ["n", 3])))
        assert model.signature.inputs == (TensorSpec("x", datatype, (-1, 3)),)
        assert model.signature.outputs == (TensorSpec("y", datatype, (-1, 3)),)

    def test_a_type_the_protocol_cannot_carry_is_a_load_error(self, write: Write) -> None:
        path = write("bf16.onnx", identity(TensorProto.BFLOAT16, [2]))
        with pytest.raises(ModelLoadError, match="'x' has type tensor\\(bfloat16\\)") as caught:
            load_model(path)
        assert caught.value.status == 503

    def test_an_unloadable_file_is_a_load_error_that_names_no_path(self, write: Write) -> None:
        path = write("broken.onnx", b"not a model")
        with pytest.raises(ModelLoadError, match="cannot be loaded") as caught:
            load_model(path)
        assert str(path.parent) not in caught.value.message
        assert "broken.onnx" not in caught.value.message


class TestInference:
    def test_logistic_regression_gives_the_weights_probabilities(self, write: Write) -> None:
        data = logistic_regression()
        model = load_model(write("lr.onnx", data))
        x = np.random.default_rng(3).normal(size=(5, FEATURES)).astype(np.float32)
        infer = request(("X", "FP32", [5, FEATURES], x.tolist()))

        outputs = dict(model.run(model.prepare(infer), None))

        expected = reference_probabilities(data, x)
        np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-6)
        assert outputs["label"].tolist() == expected.argmax(axis=1).tolist()
        assert list(outputs) == ["label", "probabilities"]

    def test_requested_outputs_only_in_their_order(self, write: Write) -> None:
        model = load_model(write("lr.onnx", logistic_regression()))
        infer = request(("X", "FP32", [1, FEATURES], [[0.0] * FEATURES]),
                        outputs=[{"name": "probabilities"}])

        outputs = model.run(model.prepare(infer), infer.output_names)

        assert [name for name, _ in outputs] == ["probabilities"]

    @pytest.mark.parametrize(("elem_type", "datatype", "values"), [
        (TensorProto.BOOL, "BOOL", [[True, False, True]]),
        (TensorProto.FLOAT16, "FP16", [[0.5, -2.0, 65504.0]]),
        (TensorProto.UINT64, "UINT64", [[0, 1, 2**64 - 1]]),
        (TensorProto.INT8, "INT8", [[-128, 0, 127]]),
        (TensorProto.DOUBLE, "FP64", [[0.1, 1e300, -3.0]]),
        (TensorProto.STRING, "BYTES", [["a", "\u00e9t\u00e9", ""]]),
    ])
    def test_identity_returns_its_input(self, write: Write, elem_type: int, datatype: str,
                                        values: list[Any]) -> None:
        model = load_model(write("id.onnx", identity(elem_type, ["n", 3])))
        (sent,) = request(("x", datatype, [1, 3], values)).inputs

        ((name, got),) = model.run(model.prepare(request(("x", datatype, [1, 3], values))), None)

        assert name == "y"
        assert got.dtype == dtype_of(datatype)
        assert got.tolist() == sent.array.tolist()  # BYTES: bytes in, bytes out

    def test_bytes_input_reaches_a_string_model_as_text(self, write: Write) -> None:
        model = load_model(write("id.onnx", identity(TensorProto.STRING, [2])))
        infer = request(("x", "BYTES", [2], ["caf\u00e9", "b"]))
        feeds = model.prepare(infer)
        assert feeds["x"].tolist() == ["caf\u00e9", "b"]
        assert model.run(feeds, None)[0][1].tolist() == ["caf\u00e9".encode(), b"b"]


class TestValidation:
    @pytest.fixture
    def lr(self, write: Write) -> LoadedModel:
        return load_model(write("lr.onnx", logistic_regression()))

    def test_unknown_input_is_named(self, lr: LoadedModel) -> None:
        message = refusal(lr, request(("X", "FP32", [1, FEATURES], [0.0] * FEATURES),
                                      ("Z", "FP32", [1], [0.0])))
        assert "unknown input 'Z'" in message
        assert "'X'" in message

    def test_missing_input_is_named_with_its_signature(self, write: Write) -> None:
        model = load_model(write("add.onnx", adder()))
        message = refusal(model, request(("a", "FP32", [1, 2], [1.0, 2.0])))
        assert "missing input 'b' (FP32 [-1, 2])" in message

    def test_wrong_datatype_names_expected_and_got(self, lr: LoadedModel) -> None:
        message = refusal(lr, request(("X", "FP64", [1, FEATURES], [0.0] * FEATURES)))
        assert message == "input 'X': expected datatype FP32, got FP64"

    def test_wrong_rank_names_expected_and_got(self, lr: LoadedModel) -> None:
        message = refusal(lr, request(("X", "FP32", [FEATURES], [0.0] * FEATURES)))
        assert f"input 'X': expected shape [-1, {FEATURES}], got [{FEATURES}]" in message

    def test_wrong_fixed_dimension_names_expected_and_got(self, lr: LoadedModel) -> None:
        message = refusal(lr, request(("X", "FP32", [1, 19], [0.0] * 19)))
        assert f"input 'X': expected shape [-1, {FEATURES}], got [1, 19]" in message

    def test_unknown_output_is_named(self, lr: LoadedModel) -> None:
        message = refusal(lr, request(("X", "FP32", [1, FEATURES], [0.0] * FEATURES),
                                      outputs=[{"name": "scores"}]))
        assert "unknown output 'scores'" in message
        assert "'probabilities'" in message

    def test_non_utf8_bytes_for_a_string_model_are_refused(self, write: Write) -> None:
        model = load_model(write("id.onnx", identity(TensorProto.STRING, [1])))
        body = (b'{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES",'
                b'"parameters":{"binary_data_size":6}}]}')
        infer = decode_infer_request(body + b"\x02\0\0\0\xff\xfe", len(body))
        assert "input 'x'" in refusal(model, infer)

    def test_inputs_the_kernel_rejects_are_a_400_without_paths(self, write: Write) -> None:
        model = load_model(write("add.onnx", adder()))
        # Both match the signature ([-1, 2]) but cannot be broadcast together.
        message = refusal(model, request(("a", "FP32", [2, 2], [0.0] * 4),
                                         ("b", "FP32", [3, 2], [0.0] * 6)))
        assert message.startswith("the model cannot run on these inputs")
        assert "/" not in message


class GatedLoader:
    """``load_model`` that counts calls and, for the paths it gates, waits until released."""

    def __init__(self, *gated: Path) -> None:
        self.calls: list[Path] = []
        self.started = {path: threading.Event() for path in gated}
        self.release = {path: threading.Event() for path in gated}

    def __call__(self, path: Path) -> LoadedModel:
        self.calls.append(path)
        if path in self.release:
            self.started[path].set()
            assert self.release[path].wait(10), "test never released the load"
        return load_model(path)


@pytest.fixture
def models(write: Write) -> Models:
    return {name: write(f"{name}.onnx", identity(TensorProto.FLOAT, ["n", 3], name=name))
            for name in ("a", "b", "c", "d")}


async def started(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10)


class TestSessionCache:
    async def test_first_get_loads_and_later_gets_hit(self, models: Models) -> None:
        loader = GatedLoader()
        cache = SessionCache(10_000, 1, loader=loader)
        first = await cache.get("a", models["a"], 100)
        assert await cache.get("a", models["a"], 100) is first
        assert loader.calls == [models["a"]]
        cache.close()

    async def test_concurrent_gets_share_one_load(self, models: Models) -> None:
        loader = GatedLoader(models["a"])
        cache = SessionCache(10_000, 1, loader=loader)
        waiters = [asyncio.create_task(cache.get("a", models["a"], 100)) for _ in range(20)]
        await started(loader.started[models["a"]])
        loader.release[models["a"]].set()

        loaded = await asyncio.gather(*waiters)

        assert loader.calls == [models["a"]]
        assert all(model is loaded[0] for model in loaded)
        cache.close()

    async def test_a_caller_giving_up_does_not_cancel_the_shared_load(self, models: Models) -> None:
        loader = GatedLoader(models["a"])
        cache = SessionCache(10_000, 1, loader=loader)
        impatient = asyncio.create_task(cache.get("a", models["a"], 100))
        patient = asyncio.create_task(cache.get("a", models["a"], 100))
        await started(loader.started[models["a"]])
        impatient.cancel()
        loader.release[models["a"]].set()

        assert isinstance(await patient, LoadedModel)
        assert "a" in cache
        cache.close()

    async def test_a_failed_load_raises_and_is_not_kept(self, write: Write) -> None:
        path = write("m.onnx", b"garbage")
        loader = GatedLoader()
        cache = SessionCache(10_000, 1, loader=loader, retry_failed_after=0)
        with pytest.raises(ModelLoadError) as caught:
            await cache.get("m", path, 10)
        assert str(path.parent) not in caught.value.message
        assert "m" not in cache

        path.write_bytes(adder())  # fixed: the next call loads again
        model = await cache.get("m", path, 10)

        assert [s.name for s in model.signature.inputs] == ["a", "b"]
        assert loader.calls == [path, path]
        cache.close()

    async def test_a_failed_load_is_answered_from_memory_for_a_while(self, write: Write) -> None:
        path = write("m.onnx", b"garbage")
        loader = GatedLoader()
        cache = SessionCache(10_000, 1, loader=loader, retry_failed_after=0.2)
        for _ in range(5):
            with pytest.raises(ModelLoadError):
                await cache.get("m", path, 10)
        assert loader.calls == [path]  # one load, not one per call
        await asyncio.sleep(0.25)
        with pytest.raises(ModelLoadError):
            await cache.get("m", path, 10)
        assert loader.calls == [path, path]  # tried again once the time was up
        cache.close()

    async def test_a_loader_error_of_any_kind_is_a_load_error(self, models: Models) -> None:
        def broken(path: Path) -> LoadedModel:
            raise OSError(f"disk error reading {path}")

        cache = SessionCache(10_000, 1, loader=broken)
        with pytest.raises(ModelLoadError) as caught:
            await cache.get("a", models["a"], 10)
        assert str(models["a"]) not in caught.value.message
        cache.close()

    async def test_least_recently_used_go_first_above_the_bound(self, models: Models) -> None:
        cache = SessionCache(100, 1)
        await cache.get("a", models["a"], 40)
        await cache.get("b", models["b"], 40)
        await cache.get("a", models["a"], 40)  # a is now the most recent

        await cache.get("c", models["c"], 40)

        assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
        assert cache.cached_bytes == 80
        cache.close()

    async def test_the_newest_model_stays_even_alone_above_the_bound(self, models: Models) -> None:
        cache = SessionCache(100, 1)
        await cache.get("a", models["a"], 40)

        await cache.get("d", models["d"], 500)

        assert ("a" in cache, "d" in cache) == (False, True)
        assert cache.cached_bytes == 500
        cache.close()

    async def test_evict_forgets_a_model_and_the_next_get_reloads(self, models: Models) -> None:
        loader = GatedLoader()
        cache = SessionCache(10_000, 1, loader=loader)
        first = await cache.get("a", models["a"], 40)

        cache.evict("a")

        assert "a" not in cache
        assert cache.cached_bytes == 0
        assert await cache.get("a", models["a"], 40) is not first
        assert loader.calls == [models["a"], models["a"]]
        cache.close()

    async def test_evicted_while_loading_is_served_not_kept(self, models: Models) -> None:
        loader = GatedLoader(models["a"])
        cache = SessionCache(10_000, 1, loader=loader)
        waiter = asyncio.create_task(cache.get("a", models["a"], 40))
        await started(loader.started[models["a"]])

        cache.evict("a")
        loader.release[models["a"]].set()

        assert isinstance(await waiter, LoadedModel)
        assert "a" not in cache
        cache.close()

    async def test_cold_load_blocks_neither_hot_models_nor_loads(self, models: Models) -> None:
        loader = GatedLoader(models["a"])
        cache = SessionCache(10_000, 1, loader=loader)
        hot = await cache.get("b", models["b"], 40)
        slow = asyncio.create_task(cache.get("a", models["a"], 40))
        await started(loader.started[models["a"]])

        # While a's load is stuck: b answers, and c (cold too) loads and answers.
        ((_, y),) = await cache.infer(hot, {"b": np.ones((1, 3), np.float32)}, None)
        cold = await cache.get("c", models["c"], 40)
        ((_, z),) = await cache.infer(cold, {"c": np.zeros((1, 3), np.float32)}, None)

        assert not slow.done()
        assert (y.tolist(), z.tolist()) == ([[1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0]])
        loader.release[models["a"]].set()
        assert isinstance(await slow, LoadedModel)
        cache.close()

    async def test_many_concurrent_infers_each_get_their_own_answer(self, write: Write) -> None:
        data = logistic_regression()
        cache = SessionCache(10_000_000, 2)
        model = await cache.get("lr", write("lr.onnx", data), 1000)
        rng = np.random.default_rng(11)
        batches = [rng.normal(size=(int(rng.integers(1, 5)), FEATURES)).astype(np.float32)
                   for _ in range(200)]

        results = await asyncio.gather(*(
            cache.infer(model, {"X": x}, ["probabilities"]) for x in batches))

        for x, ((name, probabilities),) in zip(batches, results, strict=True):
            assert name == "probabilities"
            np.testing.assert_allclose(probabilities, reference_probabilities(data, x),
                                       rtol=1e-5, atol=1e-6)
        cache.close()

    async def test_inference_runs_on_the_caches_own_threads(self, write: Write) -> None:
        cache = SessionCache(10_000, 1)
        model = await cache.get("lr", write("lr.onnx", logistic_regression()), 1000)

        def runners() -> int:
            return sum(t.name.startswith("onnx-run") for t in threading.enumerate())

        before = runners()  # the pool starts its thread on first use
        await cache.infer(model, {"X": np.zeros((1, FEATURES), np.float32)}, None)
        assert runners() == before + 1
        cache.close()

    async def test_closed_cache_runs_nothing(self, models: Models) -> None:
        cache = SessionCache(10_000, 1)
        model = await cache.get("a", models["a"], 40)
        cache.close()
        with pytest.raises(RuntimeError):
            await cache.infer(model, {"a": np.ones((1, 3), np.float32)}, None)
