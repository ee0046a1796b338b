"""Whether onnxruntime can load a file: the upload's check of an ONNX artifact."""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnxruntime as ort

if TYPE_CHECKING:
    from pathlib import Path


def check_loadable(path: Path) -> str | None:
    """None when onnxruntime (CPU) loads ``path``, else what it said, in one line."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: a refused upload is not the operator's problem
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own assorted types
        # Without the server's path: an answer names no file system layout.
        text = " ".join(str(error).replace(str(path), "the file").split())
        return f"onnxruntime cannot load it: {text[:300]}"
    return None
