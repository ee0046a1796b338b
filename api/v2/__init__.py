"""The prediction endpoints: the Open Inference Protocol (KServe V2, REST)."""
