"""The prediction endpoints: the Open Inference Protocol (KServe V2, REST) over every model.

Every infer call is metered here, at the source, and answered only once its usage record is
durable in the process's local spool (``services.metering``); metadata, ready and health calls
are not metered. Errors use the protocol's body, ``{"error": "..."}``.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID  # noqa: TC003 - Litestar reads the handlers' types at run time

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath  # noqa: TC002 - Litestar reads it at run time
from litestar.response import Stream

from api.metrics import INFERENCE_REQUESTS
from api.v2.callers import EndpointAuthError, caller_of
from domain.usage import ERROR_MAX, REQUEST_ID_MAX, USER_AGENT_MAX
from services.metering import MeteredUsage
from services.predictions import Backend, EndpointNotFoundError
from services.serving_cache import StateUnavailableError
from serving import v2_protocol as v2
from serving.onnx_runtime import PLATFORM, ModelLoadError
from serving.spool import SpoolFullError, SpoolWriteError
from serving.upstream import FORWARDED_REQUEST_HEADERS, UpstreamError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from api.tokens import TokenVerifier
    from services.predictions import Caller, PredictionService, Target

SERVER_NAME = "modelledger"
SERVER_VERSION = "0.1.0"
EXTENSIONS = [v2.BINARY_EXTENSION]
HEADER_LENGTH = "inference-header-content-length"
REQUEST_ID_HEADER = "x-request-id"
CLIENT_CLOSED = 499  # nginx's status for a call whose client left before its answer ended
_PEEK_LIMIT = 1024 * 1024  # proxied bodies up to this size are read whole, to find the V2 id
_METADATA_LIMIT = 1024 * 1024
_JSON = "application/json"

V2Request = Request[Any, Any, Any]
log = logging.getLogger("modelledger.endpoints")


class _Id(msgspec.Struct):
    id: str | None = None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(v2.encode_error(message), status_code=status, media_type=_JSON,
                    headers=headers)


def _service(request: V2Request) -> PredictionService:
    return request.app.state["predictions"]  # type: ignore[no-any-return]


class _Call:
    """One infer call: when it began, who made it, and its usage record once it ends."""

    def __init__(
        self, request: V2Request, caller: Caller, target: Target, started: float,
        occurred_at: datetime,
    ) -> None:
        self.request = request
        self.caller = caller
        self.target = target
        self.started = started
        self.occurred_at = occurred_at
        self.request_id, self.id_generated = _header_request_id(request)
        self.model_version: int | None = None  # known once the request id is

    def name_request(self, request_id: str | None) -> None:
        """The V2 body's ``id``, when it names one, is the request id."""
        if request_id:
            self.request_id, self.id_generated = request_id, False

    def usage(self, *, status: int, input_bytes: int, output_bytes: int,
              error: str | None = None, rejected: bool = False) -> MeteredUsage:
        agent = self.request.headers.get("user-agent")
        return MeteredUsage(
            model_id=self.target.model_id,
            owner_id=self.target.owner_id,
            request_id=self.request_id,
            occurred_at=self.occurred_at,
            response_time_ms=(time.perf_counter() - self.started) * 1000.0,
            input_bytes=input_bytes,
            output_bytes=output_bytes,
            success=200 <= status < 300,  # noqa: PLR2004
            status_code=status,
            error=None if error is None else error[:ERROR_MAX],
            user_agent=None if agent is None else agent[:USER_AGENT_MAX],
            ip=self.request.app.state["client_address"](self.request),
            rejected=rejected,
            api_key_id=self.caller.api_key_id,
            caller=self.caller.subject,
            model_version=(self.target.version_for(self.request_id)
                           if self.model_version is None else self.model_version),
            generated_id=self.id_generated,
        )


_COUNTERS: dict[tuple[Backend, int], Any] = {}


def _count(backend: Backend, status: int) -> None:
    """Count an answered infer call (the labelled child looked up once per backend and status)."""
    child = _COUNTERS.get((backend, status))
    if child is None:
        child = _COUNTERS[backend, status] = INFERENCE_REQUESTS.labels(backend.value, str(status))
    child.inc()


def _header_request_id(request: V2Request) -> tuple[str, bool]:
    """The request id ``X-Request-ID`` names, else a generated one; whether it was generated."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if given and len(given) <= REQUEST_ID_MAX and given.isprintable():
        return given, False
    # Unique, not secret (a request id grants nothing): uuid4's urandom call cost a tenth of
    # the handler's time here. The random module is reseeded in every forked worker.
    return f"{random.getrandbits(128):032x}", True


async def _answer(
    call: _Call, response: Response[bytes], *, input_bytes: int, error: str | None = None,
    rejected: bool = False,
) -> Response[bytes]:
    """Record the call's usage (durably), then hand its answer back."""
    status = response.status_code or 200
    service = _service(call.request)
    if service.meter is not None:
        body = response.content if isinstance(response.content, bytes) else b""
        usage = call.usage(status=status, input_bytes=input_bytes, output_bytes=len(body),
                           error=error, rejected=rejected)
        try:
            await service.record(usage)
        except (SpoolFullError, SpoolWriteError):
            _count(call.target.backend, 503)
            return _error(503, "the call could not be metered; retry later",
                          {"Retry-After": "1"})
    _count(call.target.backend, status)
    response.headers[REQUEST_ID_HEADER] = call.request_id
    return response


async def _resolve(
    request: V2Request, model_id: UUID, version: int | None = None
) -> tuple[Caller, Target] | Response[bytes]:
    """The caller and the model (or its version) it may call, or the answer refusing it
    (401, 403, 404)."""
    service = _service(request)
    verifier: TokenVerifier = request.app.state["endpoint_verifier"]
    try:
        caller = await caller_of(request, service, verifier)
        return caller, await service.target(caller, model_id, version)
    except EndpointAuthError as error:
        return _error(error.status, error.message, error.headers)
    except EndpointNotFoundError as error:
        return _error(404, str(error))
    except StateUnavailableError:
        return _error(503, "the model registry cannot be read now; retry", {"Retry-After": "1"})


def _checked_id(infer_request: v2.InferRequest) -> str | None:
    # It becomes a response header (and an upstream's request header): printable only.
    found = infer_request.id
    if found is not None and not (1 <= len(found) <= REQUEST_ID_MAX and found.isprintable()):
        raise v2.V2Error(f"id must be 1 to {REQUEST_ID_MAX} printable characters")
    return found


async def _infer(request: V2Request, model_id: UUID, version: int | None = None) -> Response[Any]:
    started, occurred_at = time.perf_counter(), datetime.now(UTC)  # before authentication
    resolved = await _resolve(request, model_id, version)
    if isinstance(resolved, Response):
        return resolved
    caller, target = resolved
    call = _Call(request, caller, target, started, occurred_at)
    body = await request.body()
    if (refusal := target.refusal) is not None:
        status, message = refusal
        return await _answer(call, _error(status, message), input_bytes=len(body),
                             error=message, rejected=True)
    if target.backend is Backend.UPSTREAM:
        return await _forward_infer(call, body)
    return await _infer_onnx(call, body)


async def _infer_onnx(call: _Call, body: bytes) -> Response[bytes]:
    service = _service(call.request)
    try:
        infer_request = v2.decode_infer_request(body, _json_length(call.request))
        call.name_request(_checked_id(infer_request))
        served = call.target.pick(call.request_id)  # by weight, the same id to one version
        call.model_version = served.version
        model = await service.session(call.target, served)
        feeds = model.prepare(infer_request)
        outputs = await service.run(model, feeds, infer_request.output_names)
        content, headers = v2.encode_infer_response(
            model_name=str(call.target.model_id), model_version=str(served.version),
            request_id=infer_request.id, outputs=outputs, binary=infer_request.wants_binary,
        )
    except v2.V2Error as error:  # a ModelLoadError too: 503, the model is not ready
        return await _answer(call, _error(error.status, error.message), input_bytes=len(body),
                             error=error.message)
    except Exception:  # a bug of ours: answered, logged and metered as a server error
        log.exception("infer call failed", extra={"model_id": str(call.target.model_id)})
        return await _answer(call, _error(500, "internal error"), input_bytes=len(body),
                             error="internal error")
    media_type = headers.pop("content-type", _JSON)
    return await _answer(call, Response(content, media_type=media_type, headers=headers),
                         input_bytes=len(body))


def _json_length(request: V2Request) -> int | None:
    return v2.parse_header_length(request.headers.get(HEADER_LENGTH))


async def _forward_infer(call: _Call, body: bytes) -> Response[Any]:
    service = _service(call.request)
    if len(body) <= _PEEK_LIMIT:
        call.name_request(_v2_id(body, call.request))
    headers = {h: v for h in FORWARDED_REQUEST_HEADERS
               if (v := call.request.headers.get(h)) is not None}
    headers[REQUEST_ID_HEADER] = call.request_id
    try:
        answer = await service.upstream.send(
            "POST", service.upstream_url(call.target, "/infer"), headers=headers, body=body
        )
    except UpstreamError as error:
        return await _answer(call, _error(error.status, error.message), input_bytes=len(body),
                             error=error.message)

    async def relay() -> AsyncIterator[bytes]:
        sent, status = 0, CLIENT_CLOSED
        failure: str | None = "the client went away"
        try:
            async for chunk in answer.chunks():
                sent += len(chunk)
                yield chunk
            status, failure = answer.status, None
        except UpstreamError as error:
            status, failure = 502, error.message  # the status is sent: the answer ends short
        finally:
            if failure is None and status >= 400:  # noqa: PLR2004
                failure = "upstream error"
            usage = call.usage(status=status, input_bytes=len(body), output_bytes=sent,
                               error=failure)
            _count(Backend.UPSTREAM, status)
            # The answer's last message waits for this: answered means metered.
            try:
                await service.record(usage)
            except (SpoolFullError, SpoolWriteError):
                log.exception("a proxied call could not be metered")

    headers = {k: v for k, v in answer.headers.items() if k.lower() != REQUEST_ID_HEADER}
    headers[REQUEST_ID_HEADER] = call.request_id
    return Stream(relay(), status_code=answer.status, headers=headers)


def _v2_id(body: bytes, request: V2Request) -> str | None:
    """The V2 ``id`` of a proxied request, when it has a readable one."""
    try:
        length = _json_length(request)
        found = msgspec.json.decode(body[:length] if length else body, type=_Id).id
    except (v2.V2Error, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return found if found and len(found) <= REQUEST_ID_MAX and found.isprintable() else None


@post("/models/{model_id:uuid}/infer", status_code=200)
async def infer(request: V2Request, model_id: FromPath[UUID]) -> Response[Any]:
    return await _infer(request, model_id)


@post("/models/{model_id:uuid}/versions/{version:int}/infer", status_code=200)
async def infer_version(
    request: V2Request, model_id: FromPath[UUID], version: FromPath[int]
) -> Response[Any]:
    """One version directly, whatever ``serving`` says (its stored file, served here)."""
    return await _infer(request, model_id, version)


@post("/predict/{model_id:uuid}", status_code=200, include_in_schema=False)
async def predict_alias(request: V2Request, model_id: FromPath[UUID]) -> Response[Any]:
    """``/predict/{id}``: the URL of models registered before the V2 endpoints."""
    return await _infer(request, model_id)


@get("/models/{model_id:uuid}")
async def model_metadata(request: V2Request, model_id: FromPath[UUID]) -> Response[bytes]:
    return await _metadata(request, model_id, None)


@get("/models/{model_id:uuid}/versions/{version:int}")
async def version_metadata(
    request: V2Request, model_id: FromPath[UUID], version: FromPath[int]
) -> Response[bytes]:
    return await _metadata(request, model_id, version)


async def _metadata(request: V2Request, model_id: UUID, version: int | None) -> Response[bytes]:
    resolved = await _resolve(request, model_id, version)
    if isinstance(resolved, Response):
        return resolved
    _, target = resolved
    if target.status == "deleted":
        return _error(404, f"model {model_id} not found")
    service = _service(request)
    if target.backend is Backend.UPSTREAM:
        return await _forward_metadata(service, target, "")
    if target.backend is Backend.NONE:
        return _error(503, target.refusal[1] if target.refusal else "not ready")
    # The signature of the version with the largest share (the first of equals).
    first = max(target.split, key=lambda entry: entry[1])[0]
    try:
        model = await service.session(target, target.served[first])
    except ModelLoadError as error:
        return _error(error.status, error.message)
    return Response(v2.encode_metadata(v2.ModelMetadata(
        name=str(model_id), versions=[str(number) for number, _ in target.split],
        platform=PLATFORM,
        inputs=list(model.signature.inputs), outputs=list(model.signature.outputs),
    )), media_type=_JSON)


async def _forward_metadata(
    service: PredictionService, target: Target, suffix: str
) -> Response[bytes]:
    try:
        answer = await service.upstream.send("GET", service.upstream_url(target, suffix))
        content = await answer.read(_METADATA_LIMIT)
    except UpstreamError as error:
        return _error(error.status, error.message)
    if answer.status == 200 and not suffix:  # noqa: PLR2004
        try:
            document = msgspec.json.decode(content)
        except msgspec.DecodeError:
            return _error(502, "the upstream server's metadata is not JSON")
        if isinstance(document, dict):
            document["name"] = str(target.model_id)  # the name clients call it by here
            content = msgspec.json.encode(document)
    return Response(content, status_code=answer.status, media_type=_JSON)


@get("/models/{model_id:uuid}/ready")
async def model_ready(request: V2Request, model_id: FromPath[UUID]) -> Response[bytes]:
    return await _ready(request, model_id, None)


@get("/models/{model_id:uuid}/versions/{version:int}/ready")
async def version_ready(
    request: V2Request, model_id: FromPath[UUID], version: FromPath[int]
) -> Response[bytes]:
    return await _ready(request, model_id, version)


async def _ready(request: V2Request, model_id: UUID, version: int | None) -> Response[bytes]:
    resolved = await _resolve(request, model_id, version)
    if isinstance(resolved, Response):
        return resolved
    _, target = resolved
    if (refusal := target.refusal) is not None:
        return _error(*refusal)
    service = _service(request)
    if target.backend is Backend.UPSTREAM:
        answer = await _forward_metadata(service, target, "/ready")
        if answer.status_code != 200:  # noqa: PLR2004
            return _error(503, f"model {model_id}'s upstream server is not ready")
    else:
        try:  # ready when every version it serves is loaded
            for served in target.served.values():
                await service.session(target, served)
        except ModelLoadError as error:
            return _error(error.status, error.message)
    return Response(msgspec.json.encode({"name": str(model_id), "ready": True}),
                    media_type=_JSON)


@get("/health/live")
async def live() -> Response[bytes]:
    return Response(b'{"live":true}', media_type=_JSON)


@get("/health/ready")
async def ready(request: V2Request) -> Response[bytes]:
    if not request.app.state["predictions_ready"]():
        return _error(503, "the server is starting or stopping")
    return Response(b'{"ready":true}', media_type=_JSON)


@get("/")
async def server_metadata() -> Response[bytes]:
    return Response(v2.encode_metadata(v2.ServerMetadata(
        name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS,
    )), media_type=_JSON)


def _protocol_error(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    """Framework errors on /v2 (413, 405, a malformed path) in the protocol's body."""
    status = error.status_code if isinstance(error, HTTPException) else 500
    message = error.detail if isinstance(error, HTTPException) else "internal error"
    return _error(status, message, getattr(error, "headers", None))


def v2_router(max_body_bytes: int) -> Router:
    return Router(
        "/v2",
        route_handlers=[
            infer, model_metadata, model_ready, infer_version, version_metadata, version_ready,
            live, ready, server_metadata,
        ],
        request_max_body_size=max_body_bytes,
        exception_handlers={Exception: _protocol_error},
        # The protocol has its own specification (KServe's rest_predict_v2.yaml); /schema
        # documents the management API.
        include_in_schema=False,
    )


def predict_router(max_body_bytes: int) -> Router:
    return Router(
        "/", route_handlers=[predict_alias], request_max_body_size=max_body_bytes,
        exception_handlers={Exception: _protocol_error}, include_in_schema=False,
    )
