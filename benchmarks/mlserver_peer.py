"""The MLServer 1.7.1 peer of benchmarks/predict_bench.py: the same model under another V2 server.

Run with the Python of MLServer's own virtual environment (it needs only numpy, scikit-learn and
joblib there, nothing of this project): fits the logistic regression of
``tests/onnx_models.logistic_regression()`` the same way (same seed, rows, features and
estimator), saves it with joblib, writes ``settings.json`` (``parallel_workers`` 0: with workers
MLServer 1.7.1 fails to start on Python 3.11; ``host`` 127.0.0.1; ``debug`` off, so no access
log, as ``modelledger serve`` runs) and ``model-settings.json`` for
``mlserver_sklearn.SKLearnModel``, then replaces itself with ``mlserver start``.

    /work/mlserver-venv/bin/python benchmarks/mlserver_peer.py --dir /tmp/peer --port 8127

The model answers ``POST /v2/models/NAME/infer``; MLServer always starts its gRPC and metrics
servers too, on ``--grpc-port`` and ``--metrics-port`` (default: ``--port`` + 1 and + 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import numpy as np
from sklearn.linear_model import LogisticRegression

FEATURES = 20  # tests/onnx_models.py FEATURES


def fit(features: int = FEATURES) -> LogisticRegression:
    """tests/onnx_models.logistic_regression() before its conversion to ONNX."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return LogisticRegression(max_iter=200).fit(x, y)


def write_repository(root: Path, name: str, ports: tuple[int, int, int]) -> None:
    """MLServer's settings and one model folder under ``root``; ``ports``: HTTP, gRPC, metrics."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(fit(), folder / "model.joblib")
    (folder / "model-settings.json").write_text(json.dumps({
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }))
    (root / "settings.json").write_text(json.dumps({
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": ports[0],
        "grpc_port": ports[1],
        "metrics_port": ports[2],
        "debug": False,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="the model repository to write")
    parser.add_argument("--port", type=int, default=8127)
    parser.add_argument("--grpc-port", type=int, help="default: --port + 1")
    parser.add_argument("--metrics-port", type=int, help="default: --port + 2")
    parser.add_argument("--name", default="bench-lr", help="the model's name on MLServer")
    args = parser.parse_args()
    root = args.dir.resolve()
    ports = (args.port, args.grpc_port or args.port + 1, args.metrics_port or args.port + 2)
    write_repository(root, args.name, ports)
    mlserver = Path(sys.executable).with_name("mlserver")  # the same environment's command
    os.chdir(root)
    os.execv(mlserver, [str(mlserver), "start", str(root)])  # noqa: S606 - our own command line


if __name__ == "__main__":
    main()
