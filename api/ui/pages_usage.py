"""The usage summary (all the user's models, per-model breakdown, the same charts) and the
operations page (scope admin: projection positions and lag, job runs)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.concurrency import sync_to_thread
from litestar.response import Template  # noqa: TC002 - read at run time

from api import presenters
from api.auth import requires
from api.deps import container
from api.tokens import SCOPE_ADMIN
from api.ui import charts
from api.ui.common import browser_zone, page, user
from projections.usage import queries as usage_queries
from projections.usage import windows
from scheduler.history import recent

JOB_RUNS_SHOWN = 50


class UsagePage(Controller):
    path = "/usage"

    @get("/", name="ui-usage")
    async def usage(
        self,
        request: Request[Any, Any, Any],
        *,
        range_: charts.RangeParam = "30d",
        bucket: charts.BucketParam = None,
        from_: charts.DayParam = None,
        to: charts.ToDayParam = None,
    ) -> Template:
        owner, store = user(request).user_id, container(request).store
        tz = browser_zone(request)
        chosen = charts.chart_range(range_, bucket, tz, first_day=from_, last_day=to)
        spans = windows.spans(chosen.bucket, windows.zone(tz), chosen.start, chosen.end)

        def read() -> tuple[Any, ...]:
            # What GET /api/usage/summary reads, over the same windows.
            buckets = usage_queries.usage_series(store, "owner", owner, spans)
            return (buckets, *usage_queries.owner_usage(store, owner))

        buckets, totals, per_model = await sync_to_thread(read)
        rows = [
            {"id": str(m), "name": name or str(m), "usage": presenters.totals(f)}
            for m, name, f in sorted(per_model, key=lambda item: -item[2].requests)
        ]
        return page(
            request, "usage.html", title="Usage", nav="usage",
            totals=presenters.totals(totals), per_model=rows, chart=chosen,
            series=charts.series_json([presenters.bucket(b) for b in buckets]),
            ranges=charts.RANGE_LABELS, buckets=windows.WINDOWS, action="/ui/usage",
        )


class OperationsPage(Controller):
    path = "/operations"
    opt = requires(SCOPE_ADMIN)

    @get("/", name="ui-operations", sync_to_thread=True)
    def operations(self, request: Request[Any, Any, Any]) -> Template:
        c = container(request)
        statuses = c.projector.status()
        runs = recent(c.store, limit=JOB_RUNS_SHOWN)
        return page(request, "operations.html", title="Operations", nav="operations",
                    projections=statuses, runs=runs)
