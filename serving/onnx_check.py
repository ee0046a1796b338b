"""Whether an ONNX file can be served: the upload's check of an ONNX artifact."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.onnx_runtime import ModelLoadError, load_model

if TYPE_CHECKING:
    from pathlib import Path


def check_loadable(path: Path) -> str | None:
    """None when onnxruntime (CPU) loads ``path`` and every tensor has a V2 datatype, else
    why not, in one line without the server's paths."""
    try:
        load_model(path)
    except ModelLoadError as error:
        return error.message
    return None
