"""The Open Inference Protocol codec, checked against Triton's own HTTP client: tritonclient
builds the requests we decode and parses the responses we encode."""

from __future__ import annotations

import json
import struct
from typing import Any

import msgspec
import numpy as np
import pytest
from tritonclient.http import InferInput, InferRequestedOutput, InferResult
from tritonclient.http._utils import _get_inference_request

from serving.v2_protocol import (
    HEADER_LENGTH,
    InferRequest,
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
    V2Error,
    datatype_of,
    decode_infer_request,
    dtype_of,
    encode_error,
    encode_infer_response,
    encode_metadata,
    parse_header_length,
)


def _extremes(dtype: Any) -> np.ndarray[Any, Any]:
    info = np.iinfo(dtype)
    return np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=dtype)


SAMPLES: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    **{name: _extremes(dtype) for name, dtype in [
        ("UINT8", np.uint8), ("UINT16", np.uint16), ("UINT32", np.uint32), ("UINT64", np.uint64),
        ("INT8", np.int8), ("INT16", np.int16), ("INT32", np.int32), ("INT64", np.int64),
    ]},
    "FP16": np.array([[0.5, -1.25, 65504.0], [0.0, 3.0, -2.0]], dtype=np.float16),
    "FP32": np.array([[0.1, -1e30, 3.5], [0.0, 7.0, -2.0]], dtype=np.float32),
    "FP64": np.array([[0.1, -1e300, 3.5], [0.0, 7.0, -2.0]], dtype=np.float64),
    "BYTES": np.array([[b"a", "\u00e9t\u00e9".encode(), b""], [b"x" * 300, b"{}", b" "]],
                      dtype=object),
}
DATATYPES = list(SAMPLES)


def triton_body(
    tensors: list[InferInput], *, request_id: str = "",
    outputs: list[InferRequestedOutput] | None = None, parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The body tritonclient sends, and its JSON header length (None: all of it)."""
    body, json_size = _get_inference_request(
        inputs=tensors, request_id=request_id, outputs=outputs, sequence_id=0,
        sequence_start=False, sequence_end=False, priority=0, timeout=None,
        custom_parameters=parameters)
    return body, json_size


def triton_request(
    inputs: dict[str, np.ndarray[Any, Any]], *, binary: bool, request_id: str = "",
    outputs: list[InferRequestedOutput] | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    tensors = []
    for name, array in inputs.items():
        tensor = InferInput(name, list(array.shape), datatype_of(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return triton_body(tensors, request_id=request_id, outputs=outputs, parameters=parameters)


def triton_result(body: bytes, headers: dict[str, str]) -> InferResult:
    length = headers.get(HEADER_LENGTH)
    return InferResult.from_response_body(body, header_length=None if length is None
                                          else int(length))


def raw_request(header: dict[str, Any], tail: bytes = b"") -> tuple[bytes, int | None]:
    text = json.dumps(header).encode()
    return text + tail, len(text) if tail else None


def refusal(body: bytes, json_length: int | None) -> str:
    with pytest.raises(V2Error) as caught:
        decode_infer_request(body, json_length)
    assert caught.value.status == 400
    return caught.value.message


class TestDatatypes:
    @pytest.mark.parametrize("datatype", DATATYPES)
    def test_each_datatype_maps_to_a_dtype_and_back(self, datatype: str) -> None:
        assert datatype_of(dtype_of(datatype)) == datatype
        assert datatype_of(SAMPLES[datatype].dtype) == datatype

    def test_big_endian_and_text_arrays_have_their_datatype(self) -> None:
        assert datatype_of(np.dtype(">i4")) == "INT32"
        assert datatype_of(np.dtype("S3")) == "BYTES"
        assert datatype_of(np.dtype("U3")) == "BYTES"

    def test_unknown_datatype_is_named(self) -> None:
        with pytest.raises(V2Error, match="'BF16'"):
            dtype_of("BF16")


class TestRequests:
    @pytest.mark.parametrize("encoding", ["json", "binary"])
    @pytest.mark.parametrize("datatype", DATATYPES)
    def test_every_datatype_decodes_as_tritonclient_sent_it(
        self, datatype: str, encoding: str
    ) -> None:
        binary = encoding == "binary"
        sent = SAMPLES[datatype]
        body, json_length = triton_request({"x": sent}, binary=binary)
        assert (json_length is not None) is binary

        request = decode_infer_request(body, json_length)

        (tensor,) = request.inputs
        assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, (2, 3))
        assert tensor.array.dtype == dtype_of(datatype)
        assert tensor.array.shape == (2, 3)
        assert tensor.array.tolist() == sent.tolist()

    def test_several_binary_inputs_are_read_from_the_tail_in_order(self) -> None:
        inputs = {"a": SAMPLES["BYTES"], "b": SAMPLES["FP16"], "c": SAMPLES["BOOL"]}
        body, json_length = triton_request(inputs, binary=True)

        request = decode_infer_request(body, json_length)

        assert [t.name for t in request.inputs] == ["a", "b", "c"]
        for tensor in request.inputs:
            assert tensor.array.tolist() == inputs[tensor.name].tolist()

    def test_binary_and_json_inputs_mix(self) -> None:
        a = InferInput("a", [2], "INT32").set_data_from_numpy(np.array([1, 2], np.int32))
        b = InferInput("b", [1], "FP64").set_data_from_numpy(np.array([0.5]), binary_data=False)
        body, json_length = triton_body([a, b])

        request = decode_infer_request(body, json_length)

        assert [t.array.tolist() for t in request.inputs] == [[1, 2], [0.5]]

    def test_nested_and_flat_data_give_the_same_tensor(self) -> None:
        def decoded(data: list[Any]) -> np.ndarray[Any, Any]:
            inputs = [{"name": "x", "shape": [2, 2, 2], "datatype": "INT16", "data": data}]
            return decode_infer_request(*raw_request({"inputs": inputs})).inputs[0].array

        flat = decoded([1, 2, 3, 4, 5, 6, 7, 8])
        nested = decoded([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])

        assert flat.tolist() == nested.tolist() == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
        assert flat.dtype == nested.dtype == np.int16

    def test_json_integers_are_valid_floats(self) -> None:
        inputs = [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2.5, -3]}]
        (tensor,) = decode_infer_request(*raw_request({"inputs": inputs})).inputs
        assert tensor.array.tolist() == [1.0, 2.5, -3.0]
        assert tensor.array.dtype == np.float32

    def test_id_parameters_and_requested_outputs_are_read(self) -> None:
        outputs = [InferRequestedOutput("p", binary_data=False), InferRequestedOutput("q")]
        body, json_length = triton_request(
            {"x": SAMPLES["FP32"]}, binary=True, request_id="req-7", outputs=outputs,
            parameters={"tenant": "blue"})

        request = decode_infer_request(body, json_length)

        assert request.id == "req-7"
        assert request.parameters == {"tenant": "blue"}
        assert request.output_names == ["p", "q"]
        assert (request.wants_binary("p"), request.wants_binary("q")) == (False, True)

    def test_without_requested_outputs_binary_data_output_sets_the_default(self) -> None:
        body, json_length = triton_request({"x": SAMPLES["FP32"]}, binary=False)

        request = decode_infer_request(body, json_length)

        assert request.outputs is None
        assert request.output_names is None
        assert request.binary_output_default is True
        assert request.wants_binary("anything")

    def test_a_plain_json_request_asks_for_json(self) -> None:
        inputs = [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]
        request = decode_infer_request(*raw_request({"inputs": inputs}))
        assert request.id is None
        assert request.parameters == {}
        assert not request.wants_binary("y")

    def test_unknown_extension_fields_are_ignored(self) -> None:
        header = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0],
                              "extra": {"k": 1}}],
                  "model_name": "m", "sequence": 3}
        (tensor,) = decode_infer_request(*raw_request(header)).inputs
        assert tensor.array.tolist() == [1.0]

    def test_empty_tensors_are_allowed(self) -> None:
        inputs = [{"name": "x", "shape": [0, 3], "datatype": "INT64", "data": []}]
        (tensor,) = decode_infer_request(*raw_request({"inputs": inputs})).inputs
        assert tensor.array.shape == (0, 3)
        assert tensor.array.dtype == np.int64


def _input(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [2], "datatype": "FP32", **fields}


# (case, body, json_length, words the message must hold)
REFUSALS: list[tuple[str, bytes, int | None, list[str]]] = [
    ("malformed json", b'{"inputs": [', None, ["not valid JSON"]),
    ("not utf-8", b'{"inputs": [{"name": "\xff"}]}', None, ["not valid JSON"]),
    ("no inputs field", b'{"id": "a"}', None, ["inputs"]),
    ("shape not integers", *raw_request({"inputs": [_input(shape=["2"], data=[1, 2])]}),
     ["shape"]),
    ("id not a string", *raw_request({"id": 5, "inputs": [_input(data=[1, 2])]}), ["id"]),
    ("unknown datatype", *raw_request({"inputs": [_input(datatype="FP8", data=[1, 2])]}),
     ["'x'", "'FP8'"]),
    ("negative shape", *raw_request({"inputs": [_input(shape=[-1, 2], data=[1, 2])]}),
     ["'x'", "negative", "[-1, 2]"]),
    ("too few elements", *raw_request({"inputs": [_input(shape=[2, 2], data=[1, 2, 3])]}),
     ["'x'", "3 elements", "needs 4"]),
    ("too many elements", *raw_request({"inputs": [_input(data=[[1, 2], [3, 4]])]}),
     ["'x'", "4 elements", "needs 2"]),
    ("ragged nesting", *raw_request({"inputs": [_input(shape=[3], data=[[1, 2], [3]])]}),
     ["'x'", "regular"]),
    ("nested too deep for numpy", *raw_request({"inputs": [
        _input(shape=[1], data=json.loads("[" * 70 + "1" + "]" * 70))]}), ["'x'"]),
    ("json nested too deep", b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", '
     b'"data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", None, ["nested too deeply"]),
    ("text for a number", *raw_request({"inputs": [_input(data=["1.5", "2"])]}),
     ["'x'", "FP32"]),
    ("null in data", *raw_request({"inputs": [_input(data=[1.0, None])]}), ["'x'", "FP32"]),
    ("float for an integer", *raw_request({"inputs": [_input(datatype="INT32",
                                                             data=[1.5, 2])]}),
     ["'x'", "INT32"]),
    ("number for a bool", *raw_request({"inputs": [_input(datatype="BOOL", data=[1, 0])]}),
     ["'x'", "BOOL"]),
    ("out of range", *raw_request({"inputs": [_input(datatype="UINT8", data=[300, 1])]}),
     ["'x'", "range", "UINT8"]),
    ("negative unsigned", *raw_request({"inputs": [_input(datatype="UINT64", data=[-1, 1])]}),
     ["'x'", "range", "UINT64"]),
    ("float beside a huge integer", *raw_request({"inputs": [
        _input(datatype="UINT64", data=[1.5, 2**64 - 1])]}), ["'x'", "UINT64"]),
    ("past uint64", *raw_request({"inputs": [_input(datatype="UINT64", data=[2**64, 1])]}),
     ["'x'", "range", "UINT64"]),
    ("number for bytes", *raw_request({"inputs": [_input(datatype="BYTES", data=["a", 2])]}),
     ["'x'", "strings"]),
    ("duplicate input", *raw_request({"inputs": [_input(data=[1, 2]), _input(data=[3, 4])]}),
     ["'x'", "more than once"]),
    ("no data", *raw_request({"inputs": [_input()]}), ["'x'", "neither data"]),
    ("data and binary", *raw_request({"inputs": [
        _input(data=[1, 2], parameters={"binary_data_size": 8})]}, b"\0" * 8),
     ["'x'", "both"]),
    ("binary without header length", json.dumps({"inputs": [
        _input(parameters={"binary_data_size": 8})]}).encode(), None,
     ["'x'", HEADER_LENGTH]),
    ("binary size not an integer", *raw_request({"inputs": [
        _input(parameters={"binary_data_size": "8"})]}, b"\0" * 8),
     ["'x'", "binary_data_size"]),
    ("truncated tail", *raw_request({"inputs": [
        _input(parameters={"binary_data_size": 8})]}, b"\0" * 5),
     ["'x'", "runs past the end", "5 bytes left"]),
    ("unclaimed tail", *raw_request({"inputs": [
        _input(parameters={"binary_data_size": 8})]}, b"\0" * 11), ["3 bytes"]),
    ("binary size against shape", *raw_request({"inputs": [
        _input(parameters={"binary_data_size": 4})]}, b"\0" * 4),
     ["'x'", "takes 8 bytes"]),
    ("bool byte not 0 or 1", *raw_request({"inputs": [
        _input(datatype="BOOL", parameters={"binary_data_size": 2})]}, b"\x01\x02"),
     ["'x'", "BOOL"]),
    ("bytes element truncated", *raw_request({"inputs": [
        _input(datatype="BYTES", parameters={"binary_data_size": 9})]},
        struct.pack("<I", 1) + b"a" + struct.pack("<I", 9)), ["'x'", "element 1"]),
    ("bytes length cut short", *raw_request({"inputs": [
        _input(datatype="BYTES", parameters={"binary_data_size": 7})]},
        struct.pack("<I", 1) + b"a" + b"\0\0"), ["'x'", "before element 1"]),
    ("bytes left over", *raw_request({"inputs": [
        _input(datatype="BYTES", shape=[1], parameters={"binary_data_size": 7})]},
        struct.pack("<I", 1) + b"a" + b"\0\0"), ["'x'", "2 bytes"]),
    ("shape larger than the body", *raw_request({"inputs": [
        _input(shape=[1 << 40], parameters={"binary_data_size": 1 << 42})]}, b"\0" * 8),
     ["'x'", "more than a body"]),
    ("header length past the body", b'{"inputs": []}', 99, [HEADER_LENGTH, "99"]),
    ("header length negative", b'{"inputs": []}', -1, [HEADER_LENGTH]),
    ("header length inside the json", b'{"inputs": []}', 5, ["not valid JSON"]),
    ("shared memory", *raw_request({"inputs": [
        _input(parameters={"shared_memory_region": "r"})]}), ["'x'", "shared memory"]),
    ("binary_data_output not a bool", *raw_request({"inputs": [_input(data=[1, 2])],
                                                    "parameters": {"binary_data_output": 1}}),
     ["binary_data_output"]),
    ("binary_data not a bool", *raw_request({"inputs": [_input(data=[1, 2])], "outputs": [
        {"name": "y", "parameters": {"binary_data": "yes"}}]}), ["'y'", "binary_data"]),
    ("duplicate output", *raw_request({"inputs": [_input(data=[1, 2])],
                                       "outputs": [{"name": "y"}, {"name": "y"}]}),
     ["'y'", "more than once"]),
    ("classification", *raw_request({"inputs": [_input(data=[1, 2])], "outputs": [
        {"name": "y", "parameters": {"classification": 2}}]}), ["'y'", "classification"]),
]


class TestRefusals:
    @pytest.mark.parametrize(("body", "json_length", "words"),
                             [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS])
    def test_bad_request_is_a_400_naming_the_problem(
        self, body: bytes, json_length: int | None, words: list[str]
    ) -> None:
        message = refusal(body, json_length)
        for word in words:
            assert word in message

    def test_header_length_must_be_a_number(self) -> None:
        with pytest.raises(V2Error, match=HEADER_LENGTH) as caught:
            parse_header_length("12a")
        assert caught.value.status == 400
        with pytest.raises(V2Error, match=HEADER_LENGTH):
            parse_header_length("-3")

    def test_header_length_is_read(self) -> None:
        assert parse_header_length(None) is None
        assert parse_header_length(" 42 ") == 42


class TestResponses:
    @pytest.mark.parametrize("encoding", ["json", "binary"])
    @pytest.mark.parametrize("datatype", DATATYPES)
    def test_every_datatype_reads_back_in_tritonclient(self, datatype: str, encoding: str) -> None:
        binary = encoding == "binary"
        sent = SAMPLES[datatype]

        body, headers = encode_infer_response(
            model_name="m", model_version="3", request_id="r-1", outputs=[("y", sent)],
            binary={"y"} if binary else set())

        result = triton_result(body, headers)
        got = result.as_numpy("y")
        assert got is not None
        assert got.shape == sent.shape
        if datatype == "BYTES" and not binary:  # JSON carries text: tritonclient gives str
            assert got.tolist() == [[e.decode() for e in row] for row in sent.tolist()]
        else:
            assert got.dtype == sent.dtype
            assert got.tolist() == sent.tolist()
        response = result.get_response()
        assert (response["model_name"], response["model_version"], response["id"]) == (
            "m", "3", "r-1")
        assert response["outputs"][0]["datatype"] == datatype

    def test_json_response_has_flat_data_and_json_content_type(self) -> None:
        body, headers = encode_infer_response(
            model_name="m", model_version=None, request_id=None,
            outputs=[("y", np.array([[1, 2], [3, 4]], dtype=np.int32))], binary=set())

        assert headers == {"content-type": "application/json"}
        assert json.loads(body) == {"model_name": "m", "outputs": [
            {"name": "y", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}

    def test_binary_response_follows_the_extension(self) -> None:
        y = np.array([1.5, 2.5], dtype=np.float32)
        body, headers = encode_infer_response(
            model_name="m", model_version=None, request_id=None,
            outputs=[("y", y), ("z", np.array([7], dtype=np.int64))], binary={"y"},
            parameters={"note": "n"})

        length = int(headers[HEADER_LENGTH])
        assert headers["content-type"] == "application/octet-stream"
        assert json.loads(body[:length]) == {"model_name": "m", "parameters": {"note": "n"},
                                             "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2],
             "parameters": {"binary_data_size": 8}},
            {"name": "z", "datatype": "INT64", "shape": [1], "data": [7]}]}
        assert body[length:] == y.tobytes()

    def test_requests_choice_of_binary_outputs_is_honoured(self) -> None:
        outputs = [InferRequestedOutput("p", binary_data=False), InferRequestedOutput("q")]
        request = decode_infer_request(*triton_request(
            {"x": SAMPLES["FP32"]}, binary=True, outputs=outputs))
        arrays = [("p", SAMPLES["INT8"]), ("q", SAMPLES["BYTES"])]

        body, headers = encode_infer_response(model_name="m", model_version=None,
                                              request_id=None, outputs=arrays,
                                              binary=request.wants_binary)

        result = triton_result(body, headers)
        p, q = result.get_output("p"), result.get_output("q")
        assert p is not None
        assert q is not None
        assert "data" in p
        assert q["parameters"] == {"binary_data_size": len(b"".join(
            struct.pack("<I", len(e)) + e for e in SAMPLES["BYTES"].ravel()))}
        assert result.as_numpy("q").tolist() == SAMPLES["BYTES"].tolist()

    def test_non_utf8_bytes_cannot_go_as_json_but_do_as_binary(self) -> None:
        y = np.array([b"\xff\xfe"], dtype=object)
        with pytest.raises(V2Error, match=r"'y'.*binary_data") as caught:
            encode_infer_response(model_name="m", model_version=None, request_id=None,
                                  outputs=[("y", y)], binary=set())
        assert caught.value.status == 400

        body, headers = encode_infer_response(model_name="m", model_version=None,
                                              request_id=None, outputs=[("y", y)],
                                              binary={"y"})
        assert triton_result(body, headers).as_numpy("y").tolist() == [b"\xff\xfe"]

    def test_string_outputs_are_encoded_as_utf8(self) -> None:
        body, headers = encode_infer_response(
            model_name="m", model_version=None, request_id=None,
            outputs=[("y", np.array(["\u00e9"], dtype=object))], binary={"y"})
        assert triton_result(body, headers).as_numpy("y").tolist() == ["\u00e9".encode()]

    def test_a_request_round_trips_through_decode_and_encode(self) -> None:
        inputs = {name: SAMPLES[name] for name in DATATYPES}
        request: InferRequest = decode_infer_request(*triton_request(inputs, binary=True))

        body, headers = encode_infer_response(
            model_name="m", model_version=None, request_id=request.id,
            outputs=[(t.name, t.array) for t in request.inputs], binary=request.wants_binary)

        result = triton_result(body, headers)
        for name, sent in inputs.items():
            assert result.as_numpy(name).tolist() == sent.tolist()


class TestDocuments:
    def test_error_body(self) -> None:
        assert json.loads(encode_error('input "x" is missing')) == {
            "error": 'input "x" is missing'}

    def test_server_metadata(self) -> None:
        document = ServerMetadata(name="model-ledger", version="1.0",
                                  extensions=["binary_tensor_data"])
        assert json.loads(encode_metadata(document)) == {
            "name": "model-ledger", "version": "1.0", "extensions": ["binary_tensor_data"]}

    def test_model_metadata(self) -> None:
        document = ModelMetadata(
            name="abc", versions=["1"], platform="onnxruntime_onnx",
            inputs=[TensorMetadata("X", "FP32", (-1, 20))],
            outputs=[TensorMetadata("label", "INT64", (-1,))])
        assert json.loads(encode_metadata(document)) == {
            "name": "abc", "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 20]}],
            "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]}
        assert msgspec.json.decode(encode_metadata(document), type=ModelMetadata) == document
