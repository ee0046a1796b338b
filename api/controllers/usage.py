"""Usage ingest (single, group-committed; batch) and usage statistics over time windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID  # noqa: TC003 - needed at run time by msgspec/Litestar

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from api import presenters
from api.auth import SCOPE_MODELS, SCOPE_USAGE_WRITE, requires
from api.deps import ApiRequest, committer, container, principal, reads, writer
from api.errors import InvalidParameterError, problem_responses
from api.metrics import USAGE_INGESTED
from api.schemas import (
    ModelUsage,
    Rejection,
    UsageAck,
    UsageBatch,
    UsageBatchResult,
    UsageSeries,
    UsageSummary,
)
from domain.errors import ModelNotFoundError
from projections.usage import queries, windows
from services.usage import UsageRecord, UsageReport

Window = Literal["hour", "day", "week", "month"]
DEFAULT_SPAN = {
    "hour": timedelta(hours=24),
    "day": timedelta(days=30),
    "week": timedelta(weeks=12),
    "month": timedelta(days=365),
}
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
FromParam = Annotated[
    datetime | None,
    QueryParameter(name="from", description="RFC 3339; default: a span before `to` (24 h, "
                   "30 days, 12 weeks or 12 months by window)"),
]
ToParam = Annotated[datetime | None, QueryParameter(description="RFC 3339; default: now")]
TzParam = Annotated[str, QueryParameter(max_length=64, description="IANA time zone of buckets")]
WindowParam = Annotated[Window, QueryParameter()]


def _range(window: str, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = _aware(end, "to") if end is not None else datetime.now(UTC)
    start = _aware(start, "from") if start is not None else end - DEFAULT_SPAN[window]
    return start, end


def _aware(moment: datetime, name: str) -> datetime:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if not EARLIEST <= moment <= LATEST:
        raise InvalidParameterError(name, "must be between 1970 and 9000")
    return moment


class UsageController(Controller):
    path = "/"
    tags = ["usage"]  # noqa: RUF012 - Litestar's class attribute

    @post(
        "/models/{model_id:str}/usage",
        operation_id="recordUsage",
        summary="Record one prediction request (idempotent on request_id)",
        opt=requires(SCOPE_MODELS, SCOPE_USAGE_WRITE),
        status_code=201,
        responses={
            200: ResponseSpec(UsageAck, description="Already recorded: not counted again"),
            # 404 also for a model the token may not write for; 503: the commit queue is full.
            **problem_responses(400, 401, 403, 404, 422, 503),
        },
    )
    async def record(
        self, request: ApiRequest, model_id: FromPath[UUID], data: JSONBody[UsageReport]
    ) -> Response[UsageAck]:
        record = UsageRecord(model_id=model_id, **msgspec.structs.asdict(data))
        fresh = await committer(request).record(record, writer(request))
        return Response(UsageAck(data.request_id, not fresh), status_code=201 if fresh else 200)

    @post(
        "/usage/batch",
        operation_id="recordUsageBatch",
        summary="Record up to 10,000 prediction requests in one transaction",
        opt=requires(SCOPE_MODELS, SCOPE_USAGE_WRITE),
        status_code=200,
        sync_to_thread=True,
        request_max_body_size=32 * 1024 * 1024,
        responses=problem_responses(400, 401, 403, 413, 422),
    )
    def record_batch(self, request: ApiRequest, data: JSONBody[UsageBatch]) -> UsageBatchResult:
        result = container(request).usage.record_batch(data.records, writer(request))
        USAGE_INGESTED.labels("batch").inc(result.accepted)
        return UsageBatchResult(
            result.accepted, result.duplicates, [Rejection(i, e) for i, e in result.rejected]
        )

    @get(
        "/models/{model_id:str}/usage",
        operation_id="getModelUsage",
        summary="A model's usage statistics per hour, day, week or month",
        opt=requires(SCOPE_MODELS),
        responses=problem_responses(400, 401, 403, 404),
    )
    async def model_usage(
        self,
        request: ApiRequest,
        *,
        model_id: FromPath[UUID],
        window: WindowParam = "day",
        from_: FromParam = None,
        to: ToParam = None,
        tz: TzParam = "UTC",
    ) -> UsageSeries:
        start, end = _range(window, from_, to)
        spans = windows.spans(window, windows.zone(tz), start, end)
        buckets = await reads(request).model_series(
            principal(request).user_id, model_id, window, tz, spans
        )
        if buckets is None:  # not the caller's model
            raise ModelNotFoundError(str(model_id))
        return UsageSeries(window, tz, buckets)

    @get(
        "/usage/summary",
        operation_id="getUsageSummary",
        summary="The caller's usage across all models: totals, per model, and per window",
        opt=requires(SCOPE_MODELS),
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403),
    )
    def summary(
        self,
        request: ApiRequest,
        *,
        window: WindowParam = "day",
        from_: FromParam = None,
        to: ToParam = None,
        tz: TzParam = "UTC",
    ) -> UsageSummary:
        c, owner_id = container(request), principal(request).user_id
        start, end = _range(window, from_, to)
        spans = windows.spans(window, windows.zone(tz), start, end)
        buckets = queries.usage_series(c.store, "owner", owner_id, spans)
        totals, per_model = queries.owner_usage(c.store, owner_id)
        return UsageSummary(
            window=window,
            tz=tz,
            totals=presenters.totals(totals),
            models=[ModelUsage(m, name, presenters.totals(s)) for m, name, s in per_model],
            buckets=[presenters.bucket(b) for b in buckets],
        )

