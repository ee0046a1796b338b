"""The body of ``POST /api/models``: JSON, or multipart/form-data streamed to the artifact store."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litestar.concurrency import sync_to_thread
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from multipart import (  # type: ignore[import-untyped]
    MultipartSegment,
    ParserError,
    ParserLimitReached,
    PushMultipartParser,
    parse_options_header,
)

from api.errors import (
    InvalidParameterError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceUnavailableError,
)
from api.schemas import NO_NUL, NOT_BLANK, ModelCreate, convert_strictly, decode_strictly
from domain.model import DESCRIPTION_MAX, FRAMEWORK_MAX, NAME_MAX, NOTES_MAX
from services.artifacts import ArtifactStore, ArtifactTooLargeError, Upload

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from litestar import Request

    from config.settings import Settings

MAX_JSON_BYTES = 1 << 20
MAX_FIELD_BYTES = 64 * 1024
FORM_FIELDS = ("name", "description", "framework")
VERSION_FIELDS = ("notes",)
RETRY_UPLOAD_AFTER = 5  # seconds: an upload in progress takes a while to finish


@dataclass
class Registration:
    data: ModelCreate
    upload: Upload | None = None
    filename: str | None = None


@dataclass
class UploadLimits:
    """The artifact uploads this process is receiving, bounded by count and by bytes.

    Checked before the body is read: beyond either bound the request gets a 503 with
    Retry-After. An upload counts with its Content-Length (with none, the largest body the
    store accepts) until its body has been read. One upload alone is always admitted, so a
    bytes bound below the largest artifact never refuses an upload for good. 0: no bound.
    """

    max_uploads: int
    max_bytes: int
    read_timeout: float
    active: int = 0
    reserved: int = 0

    @classmethod
    def of(cls, settings: Settings) -> UploadLimits:
        return cls(
            settings.max_concurrent_uploads,
            settings.max_upload_bytes_in_flight,
            settings.upload_read_timeout,
        )

    @contextlib.contextmanager
    def admit(self, size: int) -> Iterator[None]:
        """Hold a place for an upload of ``size`` bytes (on the event loop: no lock needed)."""
        if self.max_uploads and self.active >= self.max_uploads:
            raise ServiceUnavailableError(
                f"{self.active} uploads are in progress, the most this server takes at once",
                retry_after=RETRY_UPLOAD_AFTER,
            )
        if self.max_bytes and self.active and self.reserved + size > self.max_bytes:
            raise ServiceUnavailableError(
                f"uploads of {self.reserved} bytes are in progress; this one would exceed "
                f"the {self.max_bytes} bytes this server receives at once",
                retry_after=RETRY_UPLOAD_AFTER,
            )
        self.active += 1
        self.reserved += size
        try:
            yield
        finally:
            self.active -= 1
            self.reserved -= size


async def read_registration(
    request: Request[Any, Any, Any], artifacts: ArtifactStore
) -> Registration:
    limits: UploadLimits = request.app.state.uploads
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type == "multipart/form-data":
        boundary = options.get("boundary")
        if not boundary:
            raise InvalidParameterError("Content-Type", "multipart/form-data needs a boundary")
        largest = artifacts.max_bytes + MAX_FIELD_BYTES * (len(FORM_FIELDS) + 1)
        size = min(_declared_length(request) or largest, largest)
        with limits.admit(size):
            reader = await _read_multipart(
                request, boundary, _FormReader(artifacts, FORM_FIELDS), limits.read_timeout
            )
            try:
                return reader.registration()
            except BaseException:
                _discard(reader.upload)
                raise
    if media_type not in {"application/json", ""}:
        raise InvalidParameterError(
            "Content-Type", "use application/json or multipart/form-data", 415
        )
    body = bytearray()
    async for chunk in _chunks(request, limits.read_timeout):
        body.extend(chunk)
        if len(body) > MAX_JSON_BYTES:
            raise PayloadTooLargeError(detail=f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    return Registration(decode_strictly(bytes(body), ModelCreate))


@dataclass
class VersionUpload:
    upload: Upload
    filename: str
    notes: str


async def read_version_upload(
    request: Request[Any, Any, Any], artifacts: ArtifactStore
) -> VersionUpload:
    """The body of ``POST /api/models/{id}/versions``: multipart with ``file`` and ``notes``."""
    limits: UploadLimits = request.app.state.uploads
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type != "multipart/form-data":
        raise InvalidParameterError("Content-Type", "use multipart/form-data", 415)
    boundary = options.get("boundary")
    if not boundary:
        raise InvalidParameterError("Content-Type", "multipart/form-data needs a boundary")
    largest = artifacts.max_bytes + MAX_FIELD_BYTES * 2
    with limits.admit(min(_declared_length(request) or largest, largest)):
        reader = await _read_multipart(
            request, boundary, _FormReader(artifacts, VERSION_FIELDS), limits.read_timeout
        )
    if reader.upload is None:
        raise InvalidParameterError("file", "is required", 422)
    notes = reader.fields.get("notes", "")
    if len(notes) > NOTES_MAX:
        reader.upload.discard()
        raise InvalidParameterError("notes", f"must be at most {NOTES_MAX} characters", 422)
    return VersionUpload(reader.upload, reader.filename or "artifact", notes)


def _declared_length(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("content-length", "")
    return int(raw) if raw.isdigit() else None


async def _chunks(request: Request[Any, Any, Any], idle: float) -> AsyncIterator[bytes]:
    """The body's chunks; a 408 when the client sends nothing for ``idle`` seconds (0: wait).

    A client that stops sending mid-body would otherwise hold its upload's place (and its
    staging file) until the connection dies, which may be never.
    """
    stream = request.stream()
    try:
        while True:
            try:
                async with asyncio.timeout(idle or None):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise RequestTimeoutError(
                    detail=f"no part of the body arrived for {idle:g} s"
                ) from None
            yield chunk
    finally:
        await stream.aclose()


class _FormReader:
    """Feeds multipart parts: text fields into memory, the ``file`` part into the store."""

    def __init__(self, artifacts: ArtifactStore, fields: tuple[str, ...]) -> None:
        self.artifacts = artifacts
        self.allowed = fields
        self.fields: dict[str, str] = {}
        self.upload: Upload | None = None
        self.filename: str | None = None
        self.segment: MultipartSegment | None = None
        self.text = bytearray()

    def feed(self, part: MultipartSegment | bytes | None) -> None:
        if isinstance(part, MultipartSegment):
            self._start(part)
        elif part:
            self._data(part)
        elif self.segment is not None and self.segment.name != "file":
            self.fields[self.segment.name] = _text(self.segment.name, self.text)

    def _start(self, segment: MultipartSegment) -> None:
        self.segment, self.text = segment, bytearray()
        if segment.name == "file":
            if self.upload is not None:
                raise InvalidParameterError("file", "give one file", 422)
            self.upload, self.filename = self.artifacts.begin(), segment.filename or "artifact"
        elif segment.name not in self.allowed:
            raise InvalidParameterError(segment.name, "is not a field of this request", 422)

    def _data(self, chunk: bytes) -> None:
        if self.segment is not None and self.segment.name == "file" and self.upload is not None:
            self.upload.write(chunk)
            return
        self.text.extend(chunk)
        if len(self.text) > MAX_FIELD_BYTES:
            raise PayloadTooLargeError(detail="form field too large")

    def registration(self) -> Registration:
        if "name" not in self.fields:
            raise InvalidParameterError("name", "is required", 422)
        # Converted, not constructed, so that the fields' rules (lengths) are checked.
        return Registration(convert_strictly(self.fields, ModelCreate), self.upload, self.filename)


async def _read_multipart(
    request: Request[Any, Any, Any], boundary: str, reader: _FormReader, idle: float
) -> _FormReader:
    try:
        with PushMultipartParser(boundary, max_segment_count=16) as parser:
            async for chunk in _with_eof(request, idle):
                # Parsing, hashing and writing the file happen in a worker thread, one chunk
                # at a time: a large upload must not hold the event loop (hashlib and file
                # writes release the GIL).
                await sync_to_thread(_parse, parser, reader, chunk)
    except ArtifactTooLargeError as error:
        _discard(reader.upload)
        raise PayloadTooLargeError(detail=str(error)) from None
    except (ParserError, ParserLimitReached) as error:
        _discard(reader.upload)
        raise InvalidParameterError("body", f"malformed multipart/form-data: {error}") from None
    except BaseException:
        _discard(reader.upload)
        raise
    return reader


def _parse(parser: PushMultipartParser, reader: _FormReader, chunk: bytes) -> None:
    for part in parser.parse(chunk):
        reader.feed(part)


async def _with_eof(request: Request[Any, Any, Any], idle: float) -> Any:
    async for chunk in _chunks(request, idle):
        if chunk:
            yield chunk
    yield b""  # tells the parser the body ended


def _text(name: str, raw: bytearray) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameterError(name, "must be UTF-8 text") from None


def _discard(upload: Upload | None) -> None:
    if upload is not None:
        upload.discard()


def _string(description: str, **extra: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **extra)


_FIELDS = {
    "name": _string(
        f"1 to {NAME_MAX} characters, not all white space; unique among the owner's models",
        max_length=NAME_MAX, pattern=NOT_BLANK,
    ),
    "description": _string(
        f"at most {DESCRIPTION_MAX} characters", max_length=DESCRIPTION_MAX, pattern=NO_NUL
    ),
    "framework": _string(
        f"1 to {FRAMEWORK_MAX} characters, not all white space, e.g. pytorch; onnx: the "
        "artifact must be a model onnxruntime loads",
        max_length=FRAMEWORK_MAX, pattern=NOT_BLANK,
    ),
}
# JSON only: a model served by an upstream server has no file to upload. The component is
# the one msgspec documents for updateModel's body (api.openapi.document_request_bodies).
_UPSTREAM = Schema(
    one_of=[Reference(ref="#/components/schemas/Upstream"), Schema(type=OpenAPIType.NULL)],
    description="The upstream V2 server the endpoint forwards to; null or left out: none",
)
_FILE = _string(
    "the model artifact; an ONNX one (framework onnx, or a name ending in .onnx) must be a "
    "model onnxruntime loads (else a 422 naming file)",
    format="binary",
)


@dataclass
class RegisterOperation(Operation):
    """Documents the two request bodies the handler reads itself."""

    request_body: Any = field(default=None)

    def __post_init__(self) -> None:
        json_schema = Schema(
            type=OpenAPIType.OBJECT, properties={**_FIELDS, "upstream": _UPSTREAM},
            required=["name"], additional_properties=False,
        )
        form_schema = Schema(
            type=OpenAPIType.OBJECT,
            properties={**_FIELDS, "file": _FILE},
            required=["name"],
            additional_properties=False,
        )
        self.request_body = RequestBody(
            required=True,
            description="JSON, or multipart/form-data with the artifact as `file`.",
            content={
                "application/json": OpenAPIMediaType(schema=json_schema),
                "multipart/form-data": OpenAPIMediaType(schema=form_schema),
            },
        )


@dataclass
class VersionUploadOperation(Operation):
    """Documents the multipart body ``read_version_upload`` reads itself."""

    request_body: Any = field(default=None)

    def __post_init__(self) -> None:
        schema = Schema(
            type=OpenAPIType.OBJECT,
            properties={
                "file": _FILE,
                "notes": _string(f"at most {NOTES_MAX} characters", max_length=NOTES_MAX,
                                 pattern=NO_NUL),
            },
            required=["file"],
            additional_properties=False,
        )
        self.request_body = RequestBody(
            required=True, description="multipart/form-data with the artifact as `file`.",
            content={"multipart/form-data": OpenAPIMediaType(schema=schema)},
        )
