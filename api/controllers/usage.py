"""Usage ingest (single, group-committed; batch) and usage statistics over time windows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID  # noqa: TC003 - needed at run time by msgspec/Litestar

import msgspec
from litestar import Controller, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from api import presenters
from api.auth import requires
from api.deps import ApiRequest, committer, container, principal, reads, writer
from api.errors import InvalidParameterError, problem_responses
from api.metrics import USAGE_INGESTED
from api.schemas import (
    ModelUsage,
    Rejection,
    StrictBody,
    UsageAck,
    UsageReportBatch,
    UsageReportBatchResult,
    UsageSeries,
    UsageSummary,
    VersionSeries,
)
from api.tokens import SCOPE_MODELS, SCOPE_USAGE_WRITE
from domain.errors import ModelNotFoundError
from domain.usage import MAX_MODEL_VERSION
from projections.usage import queries, windows
from services.usage import UsageRecord, UsageReport, rfc3339_pattern

Window = Literal["hour", "day", "week", "month"]
DEFAULT_SPAN = {
    "hour": timedelta(hours=24),
    "day": timedelta(days=30),
    "week": timedelta(weeks=12),
    "month": timedelta(days=365),
}
FIRST_YEAR, LAST_YEAR = 1970, 8999
# RFC 3339 with an offset, in the years served (as written: the offset may move the moment
# into the year before or after, which the windows handle).
MOMENT = rfc3339_pattern(
    r"(19[7-9][0-9]|[2-8][0-9]{3})",
    r"(19(7[26]|8[048]|9[26])|[2-8][0-9](0[48]|[2468][048]|[13579][26])"
    r"|(2[048]|3[26]|4[048]|5[26]|6[048]|7[26]|8[048])00)",
)
_MOMENT = re.compile(MOMENT)
_BUCKETS = ", ".join(f"{n} {w}s" for w, n in windows.MAX_BUCKETS.items())
# Read as text and parsed strictly: Litestar's lax conversion takes a number for a time.
FromParam = Annotated[
    str | None,
    QueryParameter(
        name="from", schema_extra={"pattern": MOMENT},
        description=f"RFC 3339, years {FIRST_YEAR} to {LAST_YEAR}, not after `to`; default: a "
        "span before `to` (24 h, 30 days, 12 weeks or 12 months by window)",
    ),
]
ToParam = Annotated[
    str | None,
    QueryParameter(
        schema_extra={"pattern": MOMENT},
        description=f"RFC 3339, years {FIRST_YEAR} to {LAST_YEAR}; default: now. `from` = `to` "
        f"is an empty window (no buckets); at most {_BUCKETS} between them",
    ),
]
TzParam = Annotated[
    str,
    QueryParameter(
        description="IANA time zone of the buckets, one whose offset is a whole number of "
        "hours (a range reaching back to when it was not, e.g. Asia/Singapore before 1982, "
        "is refused)",
        schema_extra={"enum": list(windows.ZONES)},
    ),
]
WindowParam = Annotated[Window, QueryParameter()]


def _range(window: str, given_from: str | None, given_to: str | None) -> tuple[datetime, datetime]:
    end = aware(given_to, "to") if given_to is not None else datetime.now(UTC)
    start = aware(given_from, "from") if given_from is not None else end - DEFAULT_SPAN[window]
    if start > end:
        raise InvalidParameterError("from", "must not be after 'to'")
    return start, end


def aware(text: str, name: str) -> datetime:
    """``text`` as a time, if ``MOMENT`` matches it (checked here, not by Litestar, whose
    problem would quote the pattern)."""
    if _MOMENT.fullmatch(text) is None:
        raise InvalidParameterError(
            name, f"must be an RFC 3339 time with an offset, in the years {FIRST_YEAR} to "
            f"{LAST_YEAR}, e.g. 2026-01-31T00:00:00Z",
        )
    return msgspec.convert(text, datetime)


def _version_series(  # noqa: PLR0917 - the query's parameters
    request: ApiRequest, model_id: UUID, window: str, tz: str, start: datetime, end: datetime,
    version: int | None, *, by_version: bool,
) -> UsageSeries:
    """``version=``: the series of that version alone; ``group_by=version``: the model's
    series and each version's (the versions with usage in the range)."""
    c = container(request)
    c.models.get(principal(request).user_id, model_id)  # another owner's: 404
    if start == end:
        return UsageSeries(window, tz, [], version, [] if by_version else None)
    spans = windows.spans(window, windows.zone(tz), start, end)
    if version is not None:
        buckets = queries.usage_series(c.store, "version", (model_id, version), spans)
    else:
        buckets = queries.usage_series(c.store, "model", model_id, spans)
    grouped = None
    if by_version:
        used = queries.versions_used(c.store, model_id, spans[0].first_hour, spans[-1].end_hour)
        grouped = [
            VersionSeries(n, [presenters.bucket(b) for b in
                              queries.usage_series(c.store, "version", (model_id, n), spans)])
            for n in used if version is None or n == version
        ]
    return UsageSeries(window, tz, [presenters.bucket(b) for b in buckets], version, grouped)


class UsageController(Controller):
    path = "/"
    tags = ["usage"]  # noqa: RUF012 - Litestar's class attribute

    @post(
        "/models/{model_id:str}/usage",
        operation_id="recordUsage",
        summary="Record one prediction request (idempotent on request_id)",
        opt=requires(SCOPE_MODELS, SCOPE_USAGE_WRITE),
        status_code=201,
        dto=StrictBody[UsageReport],
        return_dto=None,
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
        dto=StrictBody[UsageReportBatch],
        return_dto=None,
        responses=problem_responses(400, 401, 403, 413, 422),
    )
    def record_batch(
        self, request: ApiRequest, data: JSONBody[UsageReportBatch]
    ) -> UsageReportBatchResult:
        result = container(request).usage.record_batch(data.records, writer(request))
        USAGE_INGESTED.labels("batch").inc(result.accepted)
        return UsageReportBatchResult(
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
        version: Annotated[int | None, QueryParameter(
            ge=1, le=MAX_MODEL_VERSION, description="Only the usage this version served",
        )] = None,
        group_by: Annotated[Literal["version"] | None, QueryParameter(
            description="version: also the buckets of each version with usage in the range",
        )] = None,
    ) -> UsageSeries:
        start, end = _range(window, from_, to)
        owner_id, zone = principal(request).user_id, windows.zone(tz)
        if version is not None or group_by is not None:
            return await sync_to_thread(
                lambda: _version_series(request, model_id, window, tz, start, end, version,
                                        by_version=group_by is not None)
            )
        if start == end:  # an empty window: no buckets, but only for the caller's model
            if await reads(request).get_model(owner_id, model_id) is None:
                raise ModelNotFoundError(str(model_id))
            return UsageSeries(window, tz, [])
        spans = windows.spans(window, zone, start, end)
        buckets = await reads(request).model_series(owner_id, model_id, window, tz, spans)
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
        zone = windows.zone(tz)
        spans = windows.spans(window, zone, start, end) if start < end else None
        buckets = [] if spans is None else queries.usage_series(c.store, "owner", owner_id, spans)
        totals, per_model = queries.owner_usage(c.store, owner_id)
        return UsageSummary(
            window=window,
            tz=tz,
            totals=presenters.totals(totals),
            models=[ModelUsage(m, name, presenters.totals(s)) for m, name, s in per_model],
            buckets=[presenters.bucket(b) for b in buckets],
        )

