"""Every error becomes an RFC 9457 problem (``application/problem+json``), never a stack trace."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from api.schemas import InvalidParam, Problem
from domain.api_key import KeyLimitError, KeyNotFoundError
from domain.errors import (
    InvalidStatusTransitionError,
    ModelDeletedError,
    ModelLedgerError,
    ModelNotFoundError,
    ModelVersionNotFoundError,
    NameTakenError,
    ValidationError,
    VersionConflictError,
    VersionServingError,
)
from projections.usage.windows import WindowError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from litestar.types import ExceptionHandlersMap

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("modelledger.api")

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


class PreconditionFailedError(HTTPException):
    status_code = 412


class PayloadTooLargeError(HTTPException):
    status_code = 413


class ServiceUnavailableError(HTTPException):
    """A bounded resource is full: the client should retry after ``retry_after`` seconds."""

    status_code = 503

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail=detail, headers={"Retry-After": str(retry_after)})


class RequestTimeoutError(HTTPException):
    """The client stopped sending the body. The connection is closed after the answer: the
    rest of the body is never read."""

    status_code = 408

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, headers={"Connection": "close"})


class InvalidParameterError(HTTPException):
    """A parameter's value cannot be used; the problem names the parameter."""

    status_code = 400

    def __init__(self, parameter: str, message: str, status_code: int = 400) -> None:
        super().__init__(detail=f"{parameter}: {message}", status_code=status_code)
        self.parameter = parameter
        self.message = message


def problem(
    status: int,
    detail: str | None = None,
    *,
    invalid: list[InvalidParam] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[Problem]:
    body = Problem(
        title=HTTPStatus(status).phrase, status=status, detail=detail, invalid_params=invalid
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def _http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    if isinstance(exc, ValidationException):
        return _validation_exception(exc)
    if isinstance(exc, InvalidParameterError):
        invalid = [InvalidParam(exc.parameter, exc.message)]
        return problem(exc.status_code, exc.detail, invalid=invalid)
    detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
    return problem(exc.status_code, detail, headers=exc.headers)


def _validation_exception(exc: ValidationException) -> Response[Problem]:
    """Litestar's parameter and body checks: 400, or 422 for a body field the schema lacks."""
    invalid, unknown_field = _validation_params(exc)
    detail = "; ".join(f"{p.name}: {p.reason}" for p in invalid) or "invalid request"
    return problem(422 if unknown_field else 400, detail, invalid=invalid or None)


def _validation_params(exc: ValidationException) -> tuple[list[InvalidParam], bool]:
    """The problems Litestar found, and whether one is a body field the schema lacks."""
    invalid: list[InvalidParam] = []
    unknown_field = False
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        name = str(item.get("key") or item.get("source") or "body")
        if (match := _UNKNOWN_FIELD.search(message)) is not None:
            name, unknown_field = match.group(1), True
        invalid.append(InvalidParam(name=name, reason=message))
    return invalid, unknown_field


_DomainKinds = type[ModelLedgerError] | tuple[type[ModelLedgerError], ...]
_DOMAIN_STATUS: tuple[tuple[_DomainKinds, int], ...] = (
    (ValidationError, 422),
    ((ModelNotFoundError, KeyNotFoundError, ModelVersionNotFoundError), 404),
    (KeyLimitError, 409),
    ((NameTakenError, ModelDeletedError, InvalidStatusTransitionError, VersionConflictError,
      VersionServingError), 409),
)


def status_of(exc: BaseException) -> int:
    """The status of the problem ``EXCEPTION_HANDLERS`` answer ``exc`` with."""
    if isinstance(exc, ValidationException):
        return 422 if _validation_params(exc)[1] else 400
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, WindowError):
        return 400
    if isinstance(exc, ModelLedgerError):
        return next((status for kinds, status in _DOMAIN_STATUS if isinstance(exc, kinds)), 500)
    return 500


def _domain_error(request: Request[Any, Any, Any], exc: ModelLedgerError) -> Response[Problem]:
    status = status_of(exc)
    if isinstance(exc, ValidationError):
        return problem(status, str(exc), invalid=[InvalidParam(exc.field, exc.message)])
    if isinstance(exc, ModelNotFoundError):
        return problem(status, "model not found")
    if status != 500:  # noqa: PLR2004 - the status of an unexpected error
        return problem(status, str(exc))
    return _unexpected(request, exc)


def _window_error(_: Request[Any, Any, Any], exc: WindowError) -> Response[Problem]:
    return problem(status_of(exc), str(exc), invalid=[InvalidParam(exc.parameter, exc.message)])


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.error(
        "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
    )
    return problem(500, "an unexpected error occurred; it has been logged")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_exception,
    ModelLedgerError: _domain_error,
    WindowError: _window_error,
    Exception: _unexpected,
}


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the problem responses a route can give."""
    descriptions = {
        400: "Malformed request: bad JSON, parameter, cursor, time zone or range",
        401: "Missing, malformed, expired or wrongly signed token (see WWW-Authenticate)",
        403: "The token lacks the scope this route needs",
        404: "No such model (another user's model answers the same)",
        408: "The body stopped arriving for longer than the upload read timeout",
        409: "The change conflicts with the model's state (name taken, deleted, transition)",
        412: "If-Match names a version that is no longer current",
        413: "The upload is larger than the configured maximum",
        422: "A field breaks a rule (the problem names it)",
        429: "Too many requests from this caller this minute (see Retry-After, RateLimit-*)",
        503: "The service is not ready",
    }
    return {
        code: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=descriptions.get(code, HTTPStatus(code).phrase),
            generate_examples=False,
        )
        for code in codes
    }

