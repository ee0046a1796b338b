"""The ceiling of the serving stack, for benchmarks/predict_bench.py: V2 infer, nothing else.

``POST /v2/models/{name}/infer`` decodes an Open Inference Protocol JSON body with msgspec (flat
``data``), runs one onnxruntime session (1 intra-op and 1 inter-op thread, in a pool of
``--inference-threads`` threads off the event loop, as ``MODELLEDGER_INFERENCE_THREADS`` sizes
the endpoint's) and encodes every output as a V2 JSON answer: no authentication, no metering,
no database, no model look-up. Launched with the uvicorn settings of ``modelledger serve``
(modelledger/cli/api_cmd.py), as benchmarks/bare_stack.py is. What the endpoint serves per
second is read against what this stack alone does with the same model on the same machine.

    .venv/bin/python benchmarks/bare_onnx.py --model lr.onnx --workers 2 --port 8126

Independent of the project's code on purpose: it measures Litestar, uvicorn and onnxruntime only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort
from litestar import Litestar, MediaType, Request, Response, post
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

MODEL_ENV = "BARE_ONNX_MODEL"
THREADS_ENV = "BARE_ONNX_THREADS"
# V2 datatypes of the tensors a scikit-learn model converted by skl2onnx takes and gives.
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
          "BOOL": np.bool_}
V2_TYPES = {np.dtype(v): k for k, v in DTYPES.items()}


class Tensor(msgspec.Struct, omit_defaults=True):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferRequest(msgspec.Struct):
    inputs: list[Tensor]
    id: str | None = None


class InferResponse(msgspec.Struct, omit_defaults=True):
    model_name: str
    outputs: list[Tensor]
    id: str | None = None


decode = msgspec.json.Decoder(InferRequest).decode
encode = msgspec.json.Encoder().encode


def session_of(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # 2 cores: the workers, not one session, use them
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def error(text: str) -> Response[bytes]:
    return Response(encode({"error": text}), status_code=400, media_type=MediaType.JSON)


def create_app() -> Litestar:
    """The uvicorn factory (``bare_onnx:create_app``), run in every worker process."""
    session = session_of(os.environ[MODEL_ENV])
    executor = ThreadPoolExecutor(int(os.environ.get(THREADS_ENV, "2")), "onnx")

    @post("/v2/models/{name:str}/infer", status_code=200)
    async def infer(request: Request[Any, Any, Any]) -> Response[bytes]:
        try:
            body = decode(await request.body())
            feeds: dict[str, np.ndarray[Any, Any]] = {
                t.name: np.asarray(t.data, DTYPES[t.datatype]).reshape(t.shape)
                for t in body.inputs
            }
            results = await asyncio.get_running_loop().run_in_executor(
                executor, session.run, None, feeds)
        except (msgspec.DecodeError, KeyError, ValueError, Fail, InvalidArgument) as problem:
            return error(str(problem).splitlines()[0][:200])
        outputs = [
            Tensor(meta.name, list(value.shape), V2_TYPES[value.dtype], value.ravel().tolist())
            for meta, value in zip(session.get_outputs(), results, strict=True)
        ]
        answer = InferResponse(request.path_params["name"], outputs, body.id)
        return Response(encode(answer), media_type=MediaType.JSON)

    # logging_config=None as in api/app.py: no handler of Litestar's own on the root logger.
    return Litestar(route_handlers=[infer], openapi_config=None, logging_config=None,
                    on_shutdown=[lambda: executor.shutdown(wait=False)])


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    import uvicorn  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", required=True, help=f"the .onnx file [{MODEL_ENV}]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8126)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--inference-threads", type=int, default=2)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    os.environ[MODEL_ENV] = str(Path(args.model).resolve())  # read again in each worker
    os.environ[THREADS_ENV] = str(args.inference_threads)
    # The same call as `modelledger serve` (modelledger/cli/api_cmd.py), access log off.
    uvicorn.run(
        f"{Path(__file__).stem}:create_app",  # importable: this file's folder is sys.path[0]
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level=args.log_level,
        log_config=None,
        loop="uvloop" if _has("uvloop") else "auto",
        http="httptools" if _has("httptools") else "auto",
    )


if __name__ == "__main__":
    main()
