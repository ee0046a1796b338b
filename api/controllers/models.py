"""``/api/models``: register, list, read (also as of a version or time), update, delete, history."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post, put
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from api import presenters, schemas
from api.auth import requires
from api.deps import ApiRequest, actor, artifacts, container, principal, reads
from api.errors import InvalidParameterError, PreconditionFailedError, problem_responses
from api.schemas import HistoryPage, ModelDetail, ModelPage, ModelUpdate, StrictBody
from api.tokens import SCOPE_MODELS
from api.uploads import RegisterOperation, read_registration
from domain.errors import ModelNotFoundError, VersionConflictError
from domain.model import ModelStatus
from domain.upstream import NO_UPSTREAM, Upstream
from projections.usage import queries as usage_queries
from services.usage import rfc3339_pattern

if TYPE_CHECKING:
    from projections.models.queries import ModelRow
    from projections.usage.figures import UsageFigures

Sort = Literal["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"]
ModelId = FromPath[UUID]
MAX_VERSION = 2**63 - 1  # versions are PostgreSQL bigints
# An ETag this API issues (strong or weak), or "*"; 18 digits always fit a version.
ETAG = re.compile(r'\*|(?:W/)?"([0-9]{1,18})"')
AS_OF = re.compile(rfc3339_pattern())
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=500, pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next_cursor` of the previous page, as given (opaque)",
    ),
]


def _with_etag(body: ModelDetail, status_code: int = 200, **headers: str) -> Response[ModelDetail]:
    return Response(body, status_code=status_code, headers={"ETag": f'"{body.version}"', **headers})


def _expected_version(if_match: str | None) -> int | None:
    found = None if if_match is None else ETAG.fullmatch(if_match.strip())
    if if_match is not None and found is None:
        raise InvalidParameterError("If-Match", 'must be an ETag of this API, e.g. "3"')
    return None if found is None or found.group(1) is None else int(found.group(1))


def _upstream(given: schemas.Upstream | None) -> Upstream:
    return NO_UPSTREAM if given is None else Upstream(given.url, given.model)


def _only_version_1(row: ModelRow) -> list[tuple[int, UsageFigures]] | None:
    """The usage per version of a model that never had a second version: all of it is
    version 1's (its totals), with no further read; None for a model with more versions."""
    if row["latest_version"] >= 2:  # noqa: PLR2004
        return None
    usage = row.usage
    return [(1, usage)] if usage.requests or usage.rejected else []


async def _by_version(request: ApiRequest, row: ModelRow) -> list[tuple[int, UsageFigures]]:
    found = _only_version_1(row)
    return found if found is not None else await reads(request).version_totals(row["id"])


def _serving(
    given: schemas.ServingVersion | list[schemas.ServingShare] | None,
) -> list[tuple[int, int]] | None:
    if given is None:
        return None
    if isinstance(given, schemas.ServingVersion):
        return [(given.version, 100)]
    return [(share.version, share.weight) for share in given]


def _moment(text: str) -> datetime:
    if AS_OF.fullmatch(text) is None:
        raise InvalidParameterError(
            "as_of", "must be an RFC 3339 time with an offset, e.g. 2026-01-31T00:00:00Z"
        )
    return msgspec.convert(text, datetime)


class ModelController(Controller):
    path = "/models"
    tags = ["models"]  # noqa: RUF012 - Litestar's class attribute
    opt = requires(SCOPE_MODELS)

    @post(
        "/",
        operation_id="registerModel",
        summary="Register a model (JSON, or multipart with the artifact file)",
        operation_class=RegisterOperation,
        request_max_body_size=None,  # the artifact store enforces the configured maximum
        response_headers=[],
        # 408: the body stopped arriving; 503: the uploads in progress are at their bound.
        responses=problem_responses(400, 401, 403, 408, 409, 413, 415, 422, 503),
    )
    async def register(self, request: ApiRequest) -> Response[ModelDetail]:
        registration = await read_registration(request, artifacts(request))
        data, who = registration.data, actor(request)
        row = await sync_to_thread(
            lambda: container(request).models.register(
                who, name=data.name, description=data.description, framework=data.framework,
                upload=registration.upload, filename=registration.filename,
                upstream=_upstream(data.upstream),
            )
        )
        return _with_etag(presenters.detail(row), 201, Location=f"/api/models/{row['id']}")

    @get(
        "/",
        operation_id="listModels",
        summary="The caller's models, newest last unless sorted otherwise",
        responses=problem_responses(400, 401, 403),
    )
    async def list_models(
        self,
        request: ApiRequest,
        *,
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size")] = 20,
        cursor: Cursor = None,
        status: Annotated[
            Literal["active", "inactive", "deleted"] | None, QueryParameter()
        ] = None,
        q: Annotated[
            str | None, QueryParameter(max_length=200, description="Name contains")
        ] = None,
        sort: Annotated[Sort, QueryParameter(description="'-' for descending")] = "created_at",
        include_deleted: Annotated[bool, QueryParameter()] = False,
    ) -> ModelPage:
        field, descending = sort.removeprefix("-"), sort.startswith("-")
        after = presenters.list_cursor(cursor, sort) if cursor else None
        rows, total = await reads(request).list_models(
            principal(request).user_id, limit=limit, sort=field, descending=descending,
            after=after, status=status, name_contains=q, include_deleted=include_deleted,
        )
        next_cursor = None
        if len(rows) == limit:
            last = rows[-1]
            next_cursor = presenters.encode_cursor(sort, last[field], last["id"])
        return ModelPage([presenters.model(r) for r in rows], next_cursor, total)

    @get(
        "/{model_id:str}",
        operation_id="getModel",
        summary="A model with its usage summary; as it was at a version or time if asked",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def get_model(
        self,
        request: ApiRequest,
        model_id: ModelId,
        # Read as text and parsed in _moment: Litestar's lax conversion takes a number for a time.
        as_of: Annotated[
            str | None,
            QueryParameter(
                schema_extra={"pattern": AS_OF.pattern},
                description="RFC 3339 time with an offset",
            ),
        ] = None,
        version: Annotated[int | None, QueryParameter(ge=1, le=MAX_VERSION)] = None,
    ) -> Response[ModelDetail]:
        owner_id = principal(request).user_id
        row = await reads(request).get_model(owner_id, model_id)
        if row is None:
            raise ModelNotFoundError(str(model_id))
        if as_of is None and version is None:
            return _with_etag(presenters.detail(row, await _by_version(request, row)))
        if as_of is not None and version is not None:
            raise InvalidParameterError("version", "give as_of or version, not both")
        moment = None if as_of is None else _moment(as_of)
        state, current = await sync_to_thread(
            lambda: container(request).models.get_state(
                owner_id, model_id, version=version, as_of=moment
            )
        )
        return _with_etag(presenters.historical(state, current))

    @put(
        "/{model_id:str}",
        operation_id="updateModel",
        summary="Change name, description, status (active/inactive), upstream or serving "
        "versions",
        sync_to_thread=True,
        dto=StrictBody[ModelUpdate],
        return_dto=None,
        responses=problem_responses(400, 401, 403, 404, 409, 412, 422),
    )
    def update_model(
        self,
        request: ApiRequest,
        model_id: ModelId,
        data: JSONBody[ModelUpdate],
        if_match: Annotated[
            str | None,
            HeaderParameter(
                name="If-Match", schema_extra={"pattern": f"^({ETAG.pattern})$"},
                description='The ETag, e.g. "3": the change is made only if it is current',
            ),
        ] = None,
    ) -> Response[ModelDetail]:
        expected = _expected_version(if_match)
        try:
            row = container(request).models.update(
                actor(request), model_id, name=data.name, description=data.description,
                status=None if data.status is None else ModelStatus(data.status),
                upstream=None if data.upstream is msgspec.UNSET else _upstream(data.upstream),
                serving=_serving(data.serving),
                expected_version=expected,
            )
        except VersionConflictError as error:
            if expected is None:
                raise
            raise PreconditionFailedError(detail=str(error)) from None
        by_version = _only_version_1(row)
        if by_version is None:
            by_version = usage_queries.version_totals(container(request).store, model_id)
        return _with_etag(presenters.detail(row, by_version))

    @delete(
        "/{model_id:str}",
        operation_id="deleteModel",
        summary="Soft delete: status deleted, endpoint off, artifact file removed",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403, 404),
    )
    def delete_model(self, request: ApiRequest, model_id: ModelId) -> None:
        container(request).models.delete(actor(request), model_id)

    @get(
        "/{model_id:str}/history",
        operation_id="getModelHistory",
        summary="The model's audit trail, oldest first",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403, 404),
    )
    def history(
        self,
        request: ApiRequest,
        model_id: ModelId,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
        cursor: Cursor = None,
    ) -> HistoryPage:
        page = container(request).models.get_history(
            principal(request).user_id, model_id,
            after_version=presenters.history_cursor(cursor) if cursor else 0, limit=limit,
        )
        next_cursor = None
        if page.next_after is not None:
            next_cursor = presenters.encode_cursor("history", page.next_after)
        return HistoryPage(page.entries, next_cursor, page.total)

