"""The Open Inference Protocol (KServe V2) over REST, both ways: tensors as JSON and with
Triton's binary tensor data extension, errors, and the metadata documents.

Binary form (the extension): the JSON header is followed by each binary tensor's bytes in the
order of the tensors in the JSON, little-endian, row-major; BOOL is one byte (0 or 1), a BYTES
element is a 4-byte little-endian length and its bytes. ``Inference-Header-Content-Length``
gives the JSON header's length.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

HEADER_LENGTH: Final = "Inference-Header-Content-Length"
MAX_RANK: Final = 32
MAX_DIM: Final = 2**62
BINARY_EXTENSION: Final = "binary_tensor_data"


class V2Error(Exception):
    """A call the protocol refuses: ``status`` and a ``message`` naming what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# Datatypes ---------------------------------------------------------------------------------

_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
# By (kind, size), so that native and big-endian numpy dtypes find their datatype too.
_DATATYPES: Final = {(d.kind, d.itemsize): name for name, d in _DTYPES.items() if name != "BYTES"}
_KNOWN: Final = ", ".join(_DTYPES)
# Which numpy kinds of JSON-parsed data BOOL and FP* take (JSON integers are valid floats).
_JSON_KINDS: Final = {"b": "b", "f": "fiu"}
_LENGTH: Final = struct.Struct("<I")


def dtype_of(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype (object for BYTES: elements are ``bytes``)."""
    try:
        return _DTYPES[datatype]
    except KeyError:
        raise V2Error(f"unknown datatype {datatype!r}: use one of {_KNOWN}") from None


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype (object, bytes and str arrays are BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    name = _DATATYPES.get((dtype.kind, dtype.itemsize))
    if name is None:  # the runtime's signature check keeps such tensors out
        raise V2Error(f"numpy dtype {dtype} has no V2 datatype", status=500)
    return name


# Requests ----------------------------------------------------------------------------------


class InputTensor(msgspec.Struct, frozen=True):
    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray[Any, Any]  # shaped and typed; BYTES: an object array of bytes


class RequestedOutput(msgspec.Struct, frozen=True):
    name: str
    binary_data: bool


class InferRequest(msgspec.Struct, frozen=True):
    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None  # None: every output of the model
    parameters: dict[str, Any]
    binary_output_default: bool  # the request's ``binary_data_output``

    @property
    def output_names(self) -> list[str] | None:
        return None if self.outputs is None else [output.name for output in self.outputs]

    def wants_binary(self, name: str) -> bool:
        """Whether output ``name`` goes back as binary data (its own flag, else the default)."""
        for output in self.outputs or ():
            if output.name == name:
                return output.binary_data
        return self.binary_output_default


class _InputHeader(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class _OutputHeader(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class _RequestHeader(msgspec.Struct):
    inputs: list[_InputHeader]
    id: str | None = None
    outputs: list[_OutputHeader] | None = None
    parameters: dict[str, Any] | None = None


_REQUEST: Final = msgspec.json.Decoder(_RequestHeader)


def parse_header_length(value: str | None) -> int | None:
    """The ``Inference-Header-Content-Length`` header's value as a length, or None if absent."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise V2Error(f"{HEADER_LENGTH} must be a non-negative integer, got {value[:40]!r}")
    return int(text)


def decode_infer_request(body: bytes, json_length: int | None) -> InferRequest:
    """An infer request from its body; ``json_length``: the JSON header's length (None: all)."""
    view = memoryview(body)
    if json_length is None:
        header_bytes, tail = view, view[:0]
    elif 0 <= json_length <= len(body):
        header_bytes, tail = view[:json_length], view[json_length:]
    else:
        raise V2Error(f"{HEADER_LENGTH} {json_length} is outside the body of {len(body)} bytes")
    header = _decode_header(header_bytes)
    parameters = header.parameters or {}
    binary_default = _flag(parameters, "binary_data_output", "the request")

    inputs: list[InputTensor] = []
    names: set[str] = set()
    used = 0
    for item in header.inputs:
        if item.name in names:
            raise V2Error(f"input {item.name!r} appears more than once")
        names.add(item.name)
        tensor, size = _decode_input(item, tail[used:], len(body), has_tail=json_length is not None)
        inputs.append(tensor)
        used += size
    if used != len(tail):
        raise V2Error(f"{len(tail) - used} bytes of binary data follow the inputs' data "
                      "(check the binary_data_size parameters)")
    return InferRequest(
        id=header.id,
        inputs=inputs,
        outputs=_requested_outputs(header.outputs, default=binary_default),
        parameters=parameters,
        binary_output_default=binary_default,
    )


def _decode_header(data: memoryview) -> _RequestHeader:
    try:
        return _REQUEST.decode(data)
    except msgspec.ValidationError as error:
        raise V2Error(f"invalid inference request: {error}") from None
    except msgspec.DecodeError as error:
        raise V2Error(f"the inference request is not valid JSON: {error}") from None
    except RecursionError:
        raise V2Error("the inference request's JSON is nested too deeply") from None


def _checked_shape(item: _InputHeader) -> tuple[int, ...]:
    shape = tuple(item.shape)
    if any(dim < 0 for dim in shape):
        raise V2Error(f"input {item.name!r}: shape {item.shape} has a negative dimension")
    # numpy's limits: past them reshape fails (a zero elsewhere keeps the element count small)
    if len(shape) > MAX_RANK:
        raise V2Error(f"input {item.name!r}: shape has {len(shape)} dimensions, at most "
                      f"{MAX_RANK}")
    if any(dim > MAX_DIM for dim in shape):
        raise V2Error(f"input {item.name!r}: shape {item.shape} has a dimension above {MAX_DIM}")
    return shape


def _decode_input(
    item: _InputHeader, tail: memoryview, body_size: int, *, has_tail: bool
) -> tuple[InputTensor, int]:
    """The tensor of one input and how many bytes of the binary tail it took."""
    name = item.name
    dtype = _input_dtype(item)
    shape = _checked_shape(item)
    count = math.prod(shape)
    # Every element takes at least one byte of the body: this bounds any allocation below.
    if count > body_size:
        raise V2Error(f"input {name!r}: shape {item.shape} holds {count} elements, more than "
                      f"a body of {body_size} bytes can carry")
    parameters = item.parameters or {}
    if "shared_memory_region" in parameters:
        raise V2Error(f"input {name!r}: the shared memory extension is not supported")
    size = parameters.get("binary_data_size")
    if size is None:
        if item.data is None:
            raise V2Error(f"input {name!r} has neither data nor a binary_data_size parameter")
        array = _json_array(item, dtype, shape, count)
        return InputTensor(name, item.datatype, shape, array), 0
    if item.data is not None:
        raise V2Error(f"input {name!r} has both data and a binary_data_size parameter")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise V2Error(f"input {name!r}: binary_data_size must be a non-negative integer")
    if not has_tail:
        raise V2Error(f"input {name!r} has a binary_data_size parameter but the request has "
                      f"no {HEADER_LENGTH} header")
    if size > len(tail):
        raise V2Error(f"input {name!r}: binary_data_size {size} runs past the end of the body "
                      f"({len(tail)} bytes left)")
    array = _binary_array(item, dtype, shape, count, tail[:size])
    return InputTensor(name, item.datatype, shape, array), size


def _input_dtype(item: _InputHeader) -> np.dtype[Any]:
    try:
        return dtype_of(item.datatype)
    except V2Error as error:
        raise V2Error(f"input {item.name!r}: {error.message}") from None


def _json_array(
    item: _InputHeader, dtype: np.dtype[Any], shape: tuple[int, ...], count: int
) -> np.ndarray[Any, Any]:
    name = item.name
    if item.datatype == "BYTES":
        elements = [_utf8(name, value) for value in _flat(item.data)]
        array = np.empty(len(elements), dtype=object)
        array[:] = elements
    else:
        try:
            array = np.asarray(item.data)
        except ValueError:
            raise V2Error(f"input {name!r}: data is not a regular (row-major) list of "
                          "numbers") from None
        if array.size and dtype.kind in "iu":
            array = _integers(item, dtype, array)
        elif array.size and array.dtype.kind not in _JSON_KINDS[dtype.kind]:
            raise V2Error(f"input {name!r}: data holds values that are not {item.datatype}")
    if array.size != count:
        raise V2Error(f"input {name!r}: data has {array.size} elements, shape {item.shape} "
                      f"needs {count}")
    return array.astype(dtype, copy=False).reshape(shape)


def _integers(
    item: _InputHeader, dtype: np.dtype[Any], array: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    out_of_range = V2Error(f"input {item.name!r}: data holds values out of range for "
                           f"{item.datatype}")
    if array.dtype.kind in "iu":
        info = np.iinfo(dtype)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise out_of_range
        return array
    # Integers past INT64 beside others make numpy choose float64 or object: check each one.
    values = list(_flat(item.data))  # the parsed values: float64 has lost their digits
    if not all(type(value) is int for value in values):
        raise V2Error(f"input {item.name!r}: data holds values that are not {item.datatype}")
    try:
        return np.array(values, dtype=dtype).reshape(array.shape)
    except OverflowError:
        raise out_of_range from None


def _flat(data: Any) -> Iterator[Any]:
    """The leaves of nested lists, row-major (iteratively: nesting depth is the client's)."""
    stack = [iter(data if isinstance(data, list) else [data])]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            yield value
        else:
            stack.pop()


def _utf8(name: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise V2Error(f"input {name!r}: BYTES data must be strings, got {type(value).__name__}")
    return value.encode()


def _binary_array(
    item: _InputHeader, dtype: np.dtype[Any], shape: tuple[int, ...], count: int,
    data: memoryview,
) -> np.ndarray[Any, Any]:
    name = item.name
    if item.datatype == "BYTES":
        return _bytes_elements(name, data, count).reshape(shape)
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise V2Error(f"input {name!r}: binary_data_size is {len(data)} but shape {item.shape} "
                      f"of {item.datatype} takes {expected} bytes")
    array = np.frombuffer(data, dtype=dtype)
    if item.datatype == "BOOL" and array.size and int(array.view(np.uint8).max()) > 1:
        raise V2Error(f"input {name!r}: BOOL binary data must be bytes 0 or 1")
    if not array.flags.aligned:  # the tail puts tensors at any offset
        array = array.copy()
    return array.reshape(shape)


def _bytes_elements(name: str, data: memoryview, count: int) -> np.ndarray[Any, Any]:
    elements: list[bytes] = []
    position, end = 0, len(data)
    for index in range(count):
        if position + 4 > end:
            raise V2Error(f"input {name!r}: BYTES data ends before element {index}")
        (length,) = _LENGTH.unpack_from(data, position)
        position += 4
        if position + length > end:
            raise V2Error(f"input {name!r}: BYTES element {index} claims {length} bytes, "
                          f"{end - position} are left")
        elements.append(bytes(data[position:position + length]))
        position += length
    if position != end:
        raise V2Error(f"input {name!r}: {end - position} bytes of BYTES data are left after "
                      f"its {count} elements")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def _flag(parameters: dict[str, Any], key: str, owner: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise V2Error(f"{owner}: parameter {key} must be true or false")
    return value


def _requested_outputs(
    outputs: list[_OutputHeader] | None, *, default: bool
) -> list[RequestedOutput] | None:
    if outputs is None:
        return None
    requested: list[RequestedOutput] = []
    names: set[str] = set()
    for output in outputs:
        owner = f"output {output.name!r}"
        if output.name in names:
            raise V2Error(f"{owner} is requested more than once")
        names.add(output.name)
        parameters = output.parameters or {}
        if "shared_memory_region" in parameters:
            raise V2Error(f"{owner}: the shared memory extension is not supported")
        if "classification" in parameters:
            raise V2Error(f"{owner}: the classification extension is not supported")
        binary = _flag(parameters, "binary_data", owner) if "binary_data" in parameters else default
        requested.append(RequestedOutput(output.name, binary))
    return requested


# Responses ---------------------------------------------------------------------------------


class _OutputTensor(msgspec.Struct, omit_defaults=True):
    name: str
    datatype: str
    shape: tuple[int, ...]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class _Response(msgspec.Struct, kw_only=True, omit_defaults=True):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_OutputTensor]


_ENCODER: Final = msgspec.json.Encoder()
_JSON: Final = {"content-type": "application/json"}


def encode_infer_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Sequence[tuple[str, np.ndarray[Any, Any]]],
    binary: Callable[[str], bool] | set[str],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an infer response; outputs ``binary`` names go as binary data."""
    wants_binary = binary if callable(binary) else binary.__contains__
    tensors: list[_OutputTensor] = []
    tails: list[bytes] = []
    for name, array in outputs:
        datatype = datatype_of(array.dtype)
        if wants_binary(name):
            raw = _binary_of(datatype, array)
            tails.append(raw)
            tensors.append(_OutputTensor(name, datatype, array.shape,
                                         parameters={"binary_data_size": len(raw)}))
        else:
            data = _json_of(name, datatype, array)
            tensors.append(_OutputTensor(name, datatype, array.shape, data=data))
    header = _ENCODER.encode(_Response(
        model_name=model_name, model_version=model_version, id=request_id,
        parameters=parameters or None, outputs=tensors,
    ))
    if not tails:
        return header, dict(_JSON)
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return b"".join([header, *tails]), headers


def _binary_of(datatype: str, array: np.ndarray[Any, Any]) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for element in array.ravel().tolist():
            raw = element if isinstance(element, bytes) else str(element).encode()
            parts += (_LENGTH.pack(len(raw)), raw)
        return b"".join(parts)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _json_of(name: str, datatype: str, array: np.ndarray[Any, Any]) -> list[Any]:
    values: list[Any] = array.ravel().tolist()
    if datatype != "BYTES":
        return values
    try:
        return [value.decode() if isinstance(value, bytes) else str(value) for value in values]
    except UnicodeDecodeError:
        # JSON strings are text: such an output can only travel as binary data.
        raise V2Error(f"output {name!r} holds bytes that are not UTF-8 text: request it with "
                      "the binary_data parameter") from None


def encode_error(message: str) -> bytes:
    """The protocol's error body."""
    return _ENCODER.encode({"error": message})


# Metadata ----------------------------------------------------------------------------------


class TensorMetadata(msgspec.Struct, frozen=True):
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size


class ServerMetadata(msgspec.Struct, frozen=True):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


def encode_metadata(document: ServerMetadata | ModelMetadata) -> bytes:
    return _ENCODER.encode(document)
