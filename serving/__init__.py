"""Serving: the Open Inference Protocol codec, ONNX sessions, upstream calls and the local usage spool."""
