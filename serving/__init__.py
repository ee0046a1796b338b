"""Serving: the Open Inference Protocol codec, ONNX sessions, upstream calls, the usage spool."""
