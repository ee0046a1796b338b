"""ONNX models served in-process: sessions loaded on first use into a cache bounded by bytes
(least recently used first out), inputs checked against the model's signature, and inference
on the cache's own threads (onnxruntime releases the GIL while it runs)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from serving.v2_protocol import TensorMetadata, V2Error

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from pathlib import Path

    from serving.v2_protocol import InferRequest

PLATFORM: Final = "onnxruntime_onnx"  # Triton's name for this runtime in model metadata

TensorSpec = TensorMetadata  # a signature's tensor is exactly what model metadata shows of it

_DATATYPES: Final = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16",
    "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
# Paths in onnxruntime's messages (the model's file, its own sources): never shown to callers.
_PATH: Final = re.compile(r"(?:[\w.-]*/)+[\w.-]+(?::\d+)?")
_ORT_PREFIX: Final = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")


class ModelLoadError(V2Error):
    """A model onnxruntime cannot serve: its endpoint is not ready."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=503)


def _clean(error: Exception) -> str:
    text = _ORT_PREFIX.sub("", " ".join(str(error).split()))
    return _PATH.sub("…", text)[:300]


class Signature(msgspec.Struct, frozen=True):
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _spec(arg: Any, role: str) -> TensorSpec:
    datatype = _DATATYPES.get(arg.type)
    if datatype is None:
        raise ModelLoadError(f"the model's {role} {arg.name!r} has type {arg.type}, which the "
                             "Open Inference Protocol cannot carry")
    # Symbolic ('n') and unknown (None) dimensions are dynamic.
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


def _fits(expected: tuple[int, ...], got: tuple[int, ...]) -> bool:
    if len(expected) != len(got):
        return False
    return all(want in (-1, dim) for want, dim in zip(expected, got, strict=True))


class LoadedModel:
    """One onnxruntime session and its signature."""

    def __init__(self, session: ort.InferenceSession, size_bytes: int) -> None:
        self._session = session
        self.signature = Signature(
            inputs=tuple(_spec(arg, "input") for arg in session.get_inputs()),
            outputs=tuple(_spec(arg, "output") for arg in session.get_outputs()),
        )
        self.size_bytes = size_bytes
        self._inputs = {spec.name: spec for spec in self.signature.inputs}
        self._outputs = {spec.name: spec for spec in self.signature.outputs}
        self._output_names = list(self._outputs)
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # a bad input is the caller's answer, not a log

    def prepare(self, request: InferRequest) -> dict[str, np.ndarray[Any, Any]]:
        """The session's feeds from a request's inputs, checked against the signature."""
        feeds: dict[str, np.ndarray[Any, Any]] = {}
        for tensor in request.inputs:
            spec = self._inputs.get(tensor.name)
            if spec is None:
                raise V2Error(f"unknown input {tensor.name!r}: the model takes "
                              f"{', '.join(map(repr, self._inputs))}")
            if tensor.datatype != spec.datatype:
                raise V2Error(f"input {spec.name!r}: expected datatype {spec.datatype}, got "
                              f"{tensor.datatype}")
            if not _fits(spec.shape, tensor.shape):
                raise V2Error(f"input {spec.name!r}: expected shape {list(spec.shape)}, got "
                              f"{list(tensor.shape)} (-1: any size)")
            array = tensor.array
            feeds[spec.name] = _as_text(spec.name, array) if spec.datatype == "BYTES" else array
        if len(feeds) != len(self._inputs):
            missing = [spec for name, spec in self._inputs.items() if name not in feeds]
            raise V2Error("missing input " + ", ".join(
                f"{spec.name!r} ({spec.datatype} {list(spec.shape)})" for spec in missing))
        return feeds

    def run(
        self, feeds: dict[str, np.ndarray[Any, Any]], output_names: list[str] | None
    ) -> list[tuple[str, np.ndarray[Any, Any]]]:
        """The named outputs (all if None) for prepared feeds; blocks, without the GIL."""
        names = output_names or self._output_names
        for name in names:
            if name not in self._outputs:
                raise V2Error(f"unknown output {name!r}: the model gives "
                              f"{', '.join(map(repr, self._outputs))}")
        try:
            arrays = self._session.run(names, feeds, self._run_options)
        except (InvalidArgument, Fail, RuntimeException) as error:  # what the signature cannot
            # rule out: a dynamic dimension the kernels disagree with, values out of range
            raise V2Error(f"the model cannot run on these inputs: {_clean(error)}") from None
        return [
            (name, _as_bytes(array) if self._outputs[name].datatype == "BYTES" else array)
            for name, array in zip(names, arrays, strict=True)
        ]


def _as_text(name: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # onnxruntime wants str for tensor(string): bytes would arrive as their repr ("b'..'").
    try:
        text = [element.decode() for element in array.ravel().tolist()]
    except UnicodeDecodeError:
        raise V2Error(f"input {name!r}: the model takes text, and an element is not "
                      "UTF-8") from None
    out = np.empty(len(text), dtype=object)
    out[:] = text
    return out.reshape(array.shape)


def _as_bytes(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out = np.empty(array.size, dtype=object)
    out[:] = [str(element).encode() for element in array.ravel().tolist()]
    return out.reshape(array.shape)


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    # One thread per run: concurrency comes from parallel runs on these few cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def load_model(path: Path) -> LoadedModel:
    """A session for the ONNX file at ``path`` (``ModelLoadError`` if it cannot be served)."""
    try:
        session = ort.InferenceSession(str(path), session_options(),
                                       providers=["CPUExecutionProvider"])
        size = path.stat().st_size
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own assorted types
        raise ModelLoadError(f"the model cannot be loaded: {_clean(error)}") from None
    return LoadedModel(session, size)


# A key names one artifact (model id and sha256): a file that failed to load fails again, so
# calls to it answer from memory for a while instead of taking the shared load threads.
FAILED_LOAD_SECONDS = 10.0
_FAILED_KEPT = 10_000


class SessionCache:
    """Loaded models by key, at most ``max_bytes`` of them (by the sizes given to ``get``)."""

    def __init__(
        self, max_bytes: int, threads: int, *,
        loader: Callable[[Path], LoadedModel] = load_model, load_threads: int = 2,
        retry_failed_after: float = FAILED_LOAD_SECONDS,
    ) -> None:
        self.max_bytes = max_bytes
        self.retry_failed_after = retry_failed_after
        self._failed: dict[Hashable, tuple[float, ModelLoadError]] = {}
        self._loader = loader
        self._entries: OrderedDict[Hashable, tuple[LoadedModel, int]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Task[LoadedModel]] = {}
        self._bytes = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="onnx-run")
        # Loads have threads of their own: a slow load never holds up inference.
        self._load_executor = ThreadPoolExecutor(load_threads, thread_name_prefix="onnx-load")

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    async def get(self, key: Hashable, path: Path, size_bytes: int) -> LoadedModel:
        """The model under ``key``, loaded from ``path`` on first use (one load shared)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry[0]
        failed = self._failed.get(key)
        if failed is not None:
            if time.monotonic() < failed[0]:
                raise failed[1]  # the same file fails the same way: no load per call
            del self._failed[key]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, path, size_bytes))
            task.add_done_callback(_retrieve)
            self._loading[key] = task
        # Shielded: a caller that gives up does not cancel the load the others wait for.
        return await asyncio.shield(task)

    async def _load(self, key: Hashable, path: Path, size_bytes: int) -> LoadedModel:
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(self._load_executor, self._loader, path)
        except ModelLoadError as error:
            self._remember_failure(key, error)
            raise
        except Exception:  # noqa: BLE001 - whatever a loader raised, the caller sees one type
            failure = ModelLoadError("the model cannot be loaded")
            self._remember_failure(key, failure)
            raise failure from None
        finally:
            current = self._loading.pop(key, None)
        if current is asyncio.current_task():  # else evicted while loading: serve, don't keep
            self._store(key, model, size_bytes)
        return model

    def _remember_failure(self, key: Hashable, error: ModelLoadError) -> None:
        if self.retry_failed_after > 0:
            if len(self._failed) >= _FAILED_KEPT:
                self._failed.clear()
            self._failed[key] = (time.monotonic() + self.retry_failed_after, error)

    def _store(self, key: Hashable, model: LoadedModel, size_bytes: int) -> None:
        self._entries[key] = (model, size_bytes)
        self._bytes += size_bytes
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, (_, size) = self._entries.popitem(last=False)
            self._bytes -= size

    def evict(self, key: Hashable) -> None:
        """Forget ``key`` (a load under way is served to its waiters but not kept)."""
        self._loading.pop(key, None)
        self._failed.pop(key, None)
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    async def infer(
        self, model: LoadedModel, feeds: dict[str, np.ndarray[Any, Any]],
        output_names: list[str] | None,
    ) -> list[tuple[str, np.ndarray[Any, Any]]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, model.run, feeds, output_names)

    def close(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._load_executor.shutdown(wait=False, cancel_futures=True)


def _retrieve(task: asyncio.Task[LoadedModel]) -> None:
    # A failed load nobody awaits any more (all callers gave up) is not an unhandled error.
    if not task.cancelled():
        task.exception()
