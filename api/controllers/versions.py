"""``/api/models/{id}/versions``: upload, list, read and remove versions; compare two."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, post
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath, QueryParameter

from api import presenters, schemas
from api.auth import requires
from api.controllers.usage import FromParam, ToParam, aware
from api.deps import ApiRequest, actor, artifacts, container, principal
from api.errors import InvalidParameterError, problem_responses
from api.tokens import SCOPE_MODELS
from api.uploads import VersionUploadOperation, read_version_upload
from domain import rollout
from domain.usage import hour_of
from projections.usage import queries as usage_queries
from projections.usage.figures import figures_of

if TYPE_CHECKING:
    from projections.models.queries import ModelRow, VersionView
    from projections.store.base import ReadStore

ModelId = FromPath[UUID]
Number = Annotated[int, QueryParameter(ge=1, le=2**31 - 1)]
COMPARE_SPAN = timedelta(hours=24)
MAX_COMPARE = timedelta(days=366)


def _figures(version: int, stats: object) -> schemas.VersionFigures:
    f = figures_of(stats)  # type: ignore[arg-type]
    error_rate = None if f.success_rate is None else 1 - f.success_rate
    return schemas.VersionFigures(
        version=version, requests=f.requests, successes=f.successes, failures=f.failures,
        rejected=f.rejected, success_rate=f.success_rate, error_rate=error_rate,
        avg_response_ms=f.avg_ms, p50_response_ms=f.p50_ms, p95_response_ms=f.p95_ms,
        p99_response_ms=f.p99_ms,
    )


def _minus(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None else b - a


def comparison(
    store: ReadStore, model_id: UUID, a: int, b: int, *, start: datetime, end: datetime
) -> schemas.VersionComparison:
    """Versions ``a`` and ``b`` of a model over the whole hours that begin in [start, end), and
    the rollout verdict (``compareModelVersions``; the dashboard's comparison too). The caller
    checks that the model is the caller's."""
    first = hour_of(start) + (start.timestamp() % 3600 > 0)
    last = hour_of(end) + (end.timestamp() % 3600 > 0)
    stats_a = usage_queries.version_window(store, model_id, a, first, last)
    stats_b = usage_queries.version_window(store, model_id, b, first, last)
    verdict = rollout.judge(stats_a, stats_b)
    fa, fb = _figures(a, stats_a), _figures(b, stats_b)
    return schemas.VersionComparison(
        start=datetime.fromtimestamp(first * 3600, UTC),
        end=datetime.fromtimestamp(max(first, last) * 3600, UTC),
        a=fa, b=fb,
        difference=schemas.VersionDifference(
            success_rate=_minus(fb.success_rate, fa.success_rate),
            error_rate=_minus(fb.error_rate, fa.error_rate),
            p50_response_ms=_minus(fb.p50_response_ms, fa.p50_response_ms),
            p95_response_ms=_minus(fb.p95_response_ms, fa.p95_response_ms),
            p99_response_ms=_minus(fb.p99_response_ms, fa.p99_response_ms),
        ),
        verdict=schemas.Verdict(
            b_worse=verdict.b_worse, error_rate_worse=verdict.error_rate_worse,
            p95_worse=verdict.p95_worse, error_rate_z=verdict.error_rate_z,
            p95_ratio=verdict.p95_ratio, summary=verdict.summary, method=rollout.METHOD,
        ),
    )


class VersionsController(Controller):
    path = "/models/{model_id:str}/versions"
    tags = ["versions"]  # noqa: RUF012 - Litestar's class attribute
    opt = requires(SCOPE_MODELS)

    @post(
        "/",
        operation_id="uploadModelVersion",
        summary="Upload a new artifact as the model's next version",
        operation_class=VersionUploadOperation,
        request_max_body_size=None,  # the artifact store enforces the configured maximum
        responses=problem_responses(400, 401, 403, 404, 408, 409, 413, 415, 422, 503),
    )
    async def upload(
        self, request: ApiRequest, model_id: ModelId
    ) -> Response[schemas.ModelVersion]:
        c, who = container(request), actor(request)
        # Another owner's model: 404 before any of the body is read.
        await sync_to_thread(c.models.get, who.user_id, model_id)
        given = await read_version_upload(request, artifacts(request))

        def store() -> tuple[VersionView, ModelRow]:
            view = c.models.upload_version(
                who, model_id, given.upload, filename=given.filename, notes=given.notes
            )
            return view, c.models.get(who.user_id, model_id)

        try:
            view, row = await sync_to_thread(store)
        except BaseException:
            given.upload.discard()
            raise
        return Response(
            presenters.model_version(view, presenters.serving_of(row)), status_code=201,
            headers={"Location": f"/api/models/{model_id}/versions/{view.number}"},
        )

    @get(
        "/",
        operation_id="listModelVersions",
        summary="The model's versions, oldest first, with the share of traffic each serves",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403, 404),
    )
    def list_versions(
        self,
        request: ApiRequest,
        model_id: ModelId,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=100,
                                                     pattern=r"^[A-Za-z0-9_-]+$")] = None,
    ) -> schemas.ModelVersionPage:
        after = presenters.history_cursor(cursor, "versions") if cursor else 0
        row, views = container(request).models.get_versions(
            principal(request).user_id, model_id, after=after, limit=limit
        )
        split = presenters.serving_of(row)
        next_cursor = (presenters.encode_cursor("versions", views[-1].number)
                       if len(views) == limit else None)
        return schemas.ModelVersionPage(
            [presenters.model_version(v, split) for v in views], next_cursor,
            presenters.shares(split), row["latest_version"],
        )

    @get(
        "/compare",
        operation_id="compareModelVersions",
        summary="Two versions over the same window: requests, success rate, percentiles, verdict",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403, 404),
    )
    def compare(
        self,
        request: ApiRequest,
        model_id: ModelId,
        *,
        a: Number,
        b: Number,
        from_: FromParam = None,
        to: ToParam = None,
    ) -> schemas.VersionComparison:
        end = aware(to, "to") if to is not None else datetime.now(UTC)
        start = aware(from_, "from") if from_ is not None else end - COMPARE_SPAN
        if start > end:
            raise InvalidParameterError("from", "must not be after 'to'")
        if end - start > MAX_COMPARE:
            raise InvalidParameterError("from", "the window may be at most 366 days long")
        c = container(request)
        c.models.get(principal(request).user_id, model_id)
        return comparison(c.store, model_id, a, b, start=start, end=end)

    @get(
        "/{number:int}",
        operation_id="getModelVersion",
        summary="One version of the model",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403, 404),
    )
    def get_version(
        self, request: ApiRequest, model_id: ModelId, number: FromPath[int]
    ) -> schemas.ModelVersion:
        c, owner_id = container(request), principal(request).user_id
        view = c.models.get_version(owner_id, model_id, _number(number))
        return presenters.model_version(view, presenters.serving_of(c.models.get(owner_id,
                                                                                  model_id)))

    @delete(
        "/{number:int}",
        operation_id="deleteModelVersion",
        summary="Remove a version's file (not one that serves traffic: 409)",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    def delete_version(self, request: ApiRequest, model_id: ModelId, number: FromPath[int]) -> None:
        container(request).models.remove_version(actor(request), model_id, _number(number))


def _number(number: int) -> int:
    if not 1 <= number <= 2**31 - 1:
        raise InvalidParameterError("number", "must be a version number, 1 or more", 404)
    return number
