"""A model's page: metadata and its edit, activate/deactivate, delete, the endpoint with an
example call, usage charts over a chosen range, and the audit trail with time travel."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from api import presenters
from api.controllers.versions import comparison
from api.deps import actor, container, reads
from api.errors import status_of
from api.ui import charts
from api.ui import format as fmt
from api.ui.common import browser_zone, page, user
from api.ui.forms import form_text
from domain.errors import (
    ModelDeletedError,
    ModelLedgerError,
    ModelNotFoundError,
    NameTakenError,
    ValidationError,
)
from domain.model import ModelStatus
from projections.models import queries as model_queries
from projections.usage import queries as usage_queries
from projections.usage import windows

if TYPE_CHECKING:
    from projections.models.queries import ModelRow
    from projections.store.base import ReadStore
    from projections.usage.windows import Windows

ModelId = FromPath[UUID]
HISTORY_PAGE = 50
MAX_VERSIONS_SHOWN = 100
VersionParam = Annotated[int | None, QueryParameter(name="version", ge=1, le=2**63 - 1,
                                               required=False)]
CompareParam = Annotated[int | None, QueryParameter(ge=1, le=2**31 - 1, required=False)]
Over = Literal["24h", "7d", "30d"]
COMPARE_SPANS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
COMPARE_LABELS = {"24h": "the last 24 hours", "7d": "the last 7 days", "30d": "the last 30 days"}


@dataclass(frozen=True)
class Compare:
    """What the versions section is asked for: two versions over a span, the per-version
    series."""

    a: int | None = None
    b: int | None = None
    over: str = "24h"
    per_version: bool = False
AfterParam = Annotated[int, QueryParameter(name="after", ge=0, le=2**63 - 1)]


def example_call(url: str) -> str:
    """A curl call of the endpoint with a V2 JSON body (the key is the user's own)."""
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": [[0.1, 0.2, 0.3, 0.4]]}]}
    return (f"curl -sS -X POST {url}/infer \\\n  -H 'Authorization: Bearer YOUR_API_KEY' \\\n"
            f"  -H 'Content-Type: application/json' \\\n  -d '{json.dumps(body)}'")


def _detail_view(detail: Any) -> dict[str, Any]:
    return {
        "id": str(detail.id), "name": detail.name, "description": detail.description,
        "framework": detail.framework, "status": detail.status, "version": detail.version,
        "endpoint_url": detail.endpoint.url, "endpoint_active": detail.endpoint.active,
        "artifact": detail.artifact, "upstream": detail.upstream,
        "created_at": detail.created_at, "updated_at": detail.updated_at,
    }


def _versions(
    store: ReadStore, row: ModelRow, chosen: charts.ChartRange, spans: Windows,
    compare: Compare,
) -> dict[str, Any]:
    """The versions' table, the serving split, for two versions (by default the two a canary
    split serves) their comparison over the last 24 hours, 7 or 30 days, and when asked each
    version's requests per window of the chart (as ``usage?group_by=version``).

    The comparison and the per-version series merge hourly rows (histograms included): over
    30 days that is most of the page's time, hence the short default and the series on demand.
    """
    model_id = row["id"]
    split = presenters.serving_of(row)
    weights = dict(split)
    totals = dict(usage_queries.version_totals(store, model_id))
    listed = [
        {"number": v.number, "filename": v.filename, "size": v.size_bytes, "notes": v.notes,
         "created_at": v.created_at, "created_by": v.created_by, "removed": v.removed_at,
         "weight": weights.get(v.number, 0), "usage": totals.get(v.number)}
        for v in model_queries.list_versions(store, model_id, limit=MAX_VERSIONS_SHOWN)
    ]
    a, b = compare.a, compare.b
    if (a is None or b is None) and len(split) >= 2:  # noqa: PLR2004 - a canary split
        a, b = split[0][0], split[1][0]
    compared = None
    if a is not None and b is not None:
        compared = comparison(store, model_id, a, b, start=chosen.end - COMPARE_SPANS[
            compare.over], end=chosen.end)
    per_version = None
    if compare.per_version:
        used = usage_queries.versions_used(store, model_id, spans[0].first_hour,
                                           spans[-1].end_hour)
        per_version = json.dumps({
            str(n): [w.figures.requests for w in
                     usage_queries.usage_series(store, "version", (model_id, n), spans)]
            for n in used
        })
    return {"versions": listed, "serving": fmt.serving(split), "split": split,
            "per_version": per_version, "live": [v for v in listed if v["removed"] is None],
            "compared": compared, "compare_a": a, "compare_b": b, "compare_over": compare.over,
            "compare_spans": COMPARE_LABELS, "per_version_shown": compare.per_version}


def _changes(changes: dict[str, Any]) -> list[tuple[str, str]]:
    shown = []
    for name, value in changes.items():
        if isinstance(value, dict) and set(value) == {"old", "new"}:
            shown.append((name, f"{value['old']!s} → {value['new']!s}"))
        else:
            shown.append((name, fmt.NONE if value in (None, "") else str(value)))
    return shown


async def _model_page(
    request: Request[Any, Any, Any], model_id: UUID, chosen: charts.ChartRange, *,
    version: int | None = None, after: int = 0, saved: str | None = None, error: str = "",
    status_code: int = 200, compare: Compare = Compare(), typed: dict[str, str] | None = None,
) -> Template:
    """The page; ``error``: why the change just posted was refused (shown by its form)."""
    owner = user(request).user_id
    row = await reads(request).get_model(owner, model_id)
    if row is None:
        raise ModelNotFoundError(str(model_id))
    detail = presenters.detail(row)
    past = None
    if version is not None:
        state, current = await sync_to_thread(
            lambda: container(request).models.get_state(owner, model_id, version=version)
        )
        past = _detail_view(presenters.historical(state, current))
    tz = chosen.tz
    spans = windows.spans(chosen.bucket, windows.zone(tz), chosen.start, chosen.end)
    buckets = await reads(request).model_series(owner, model_id, chosen.bucket, tz, spans)
    history = await sync_to_thread(
        lambda: container(request).models.get_history(
            owner, model_id, after_version=after, limit=HISTORY_PAGE)
    )
    versions = await sync_to_thread(
        lambda: _versions(container(request).store, row, chosen, spans, compare))
    me = user(request)
    # The signed-in user's own entries under the name the dashboard shows for them (an
    # identity provider's subject is often an opaque id); anyone else's as recorded.
    trail = [{"version": e.version, "type": e.type, "at": e.at,
              "actor": me.name if me.name and (e.actor, e.actor_issuer) == (me.subject, me.issuer)
              else e.actor,
              "issuer": e.actor_issuer, "changes": _changes(e.changes)}
             for e in history.entries]
    return page(
        request, "model.html", title=detail.name, nav="models", status_code=status_code,
        model=_detail_view(detail), usage=detail.usage, past=past,
        example=example_call(detail.endpoint.url),
        chart=chosen, series=charts.series_json(buckets or []),
        ranges=charts.RANGE_LABELS, buckets=windows.WINDOWS, trail=trail,
        history_next=history.next_after, saved=saved, error=error, typed=typed or {}, **versions,
        per_version_link=f"/ui/models/{model_id}?" + urlencode(
            {**dict(request.query_params), "per_version": "true"}) + "#versions",
    )


async def refused(
    request: Request[Any, Any, Any], model_id: UUID, error: ModelLedgerError,
    typed: dict[str, str] | None = None,
) -> Template:
    """The model's page again, saying why the change was refused (409 or 422, as the API);
    ``typed``: what the user typed in the refused form, shown again in it."""
    chosen = charts.chart_range("30d", None, browser_zone(request))
    return await _model_page(request, model_id, chosen, error=str(error),
                             status_code=status_of(error), typed=typed)


class ModelPage(Controller):
    path = "/models/{model_id:uuid}"

    @get("/", name="ui-model")
    async def model(
        self,
        request: Request[Any, Any, Any],
        model_id: ModelId,
        *,
        range_: charts.RangeParam = "30d",
        bucket: charts.BucketParam = None,
        from_: charts.DayParam = None,
        to: charts.ToDayParam = None,
        version: VersionParam = None,
        after: AfterParam = 0,
        saved: Annotated[str | None, QueryParameter(name="saved", max_length=20,
                                               required=False)] = None,
        a: CompareParam = None,
        b: CompareParam = None,
        over: Annotated[Over, QueryParameter()] = "24h",
        per_version: Annotated[bool, QueryParameter()] = False,
    ) -> Template:
        return await _model_page(
            request, model_id, charts.chart_range(range_, bucket, browser_zone(request),
                                                  first_day=from_, last_day=to),
            version=version, after=after, saved=saved,
            compare=Compare(a, b, over, per_version),
        )

    @post("/edit", status_code=303)
    async def edit(self, request: Request[Any, Any, Any], model_id: ModelId) -> Response[Any]:
        form = await request.form()
        name, description = form_text(form, "name", 200), form_text(form, "description")
        who = actor(request)
        try:
            await sync_to_thread(lambda: container(request).models.update(
                who, model_id, name=name, description=description))
        except (ValidationError, NameTakenError, ModelDeletedError) as error:
            return await refused(request, model_id, error,
                                 {"name": name, "description": description})
        return Redirect(f"/ui/models/{model_id}?saved=details", status_code=303)

    @post("/status", status_code=303)
    async def status(self, request: Request[Any, Any, Any], model_id: ModelId) -> Response[Any]:
        form = await request.form()
        wanted = form_text(form, "status", 20)
        if wanted not in {"active", "inactive"}:
            raise ValidationError("status", "must be active or inactive")
        who = actor(request)
        await sync_to_thread(lambda: container(request).models.update(
            who, model_id, status=ModelStatus(wanted)))
        return Redirect(f"/ui/models/{model_id}?saved=status", status_code=303)

    @post("/delete", status_code=303)
    async def delete(self, request: Request[Any, Any, Any], model_id: ModelId) -> Response[Any]:
        form = await request.form()
        owner = user(request).user_id
        row = await reads(request).get_model(owner, model_id)
        if row is None:
            raise ModelNotFoundError(str(model_id))
        if form_text(form, "confirm_name", 200) != row["name"]:
            refusal = ValidationError("confirm_name", "type the model's name to delete it")
            return await refused(request, model_id, refusal)
        who = actor(request)
        await sync_to_thread(lambda: container(request).models.delete(who, model_id))
        return Redirect("/ui/", status_code=303)
