"""The models page: the user's models with usage, filtered, searched, sorted, keyset pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from litestar import Controller, Request, get
from litestar.concurrency import sync_to_thread
from litestar.params import QueryParameter
from litestar.response import Template  # noqa: TC002 - read at run time

from api import presenters
from api.deps import container, reads
from api.ui import format as fmt
from api.ui.common import page, user
from projections.usage import queries as usage_queries
from projections.usage import windows

PAGE_SIZE = 20
SPARK_DAYS = 30
# "": the form's "active and inactive"
Status = Literal["", "active", "inactive", "deleted"]
Sort = Literal["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"]
SORTS = {"-created_at": "Newest first", "created_at": "Oldest first", "name": "Name A to Z",
         "-name": "Name Z to A", "-updated_at": "Recently changed"}


def _hour_index(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


class ModelsPage(Controller):
    path = "/"

    @get("/", name="ui-models")
    async def models(
        self,
        request: Request[Any, Any, Any],
        *,
        status: Annotated[Status | None, QueryParameter(name="status", required=False)] = None,
        q: Annotated[str | None, QueryParameter(name="q", max_length=200, required=False)] = None,
        sort: Annotated[Sort, QueryParameter(name="sort")] = "-created_at",
        cursor: Annotated[str | None, QueryParameter(name="cursor", max_length=500,
                                                pattern=r"^[A-Za-z0-9_-]+$",
                                                required=False)] = None,
    ) -> Template:
        owner = user(request).user_id
        field, descending = sort.removeprefix("-"), sort.startswith("-")
        after = presenters.list_cursor(cursor, sort) if cursor else None
        rows, total = await reads(request).list_models(
            owner, limit=PAGE_SIZE, sort=field, descending=descending, after=after,
            status=status or None, name_contains=q or None, include_deleted=False,
        )
        now = datetime.now(UTC)
        hour = _hour_index(now)
        first_day = (hour + 1) // windows.DAY - SPARK_DAYS + 1
        ids = [row["id"] for row in rows]
        overview = await sync_to_thread(
            lambda: usage_queries.models_overview(
                container(request).store, ids, days=(first_day, first_day + SPARK_DAYS),
                hours=(hour - 23, hour + 1),
            )
        )
        items = []
        for row in rows:
            daily, last_day, totals = overview[row["id"]]
            items.append({
                "id": str(row["id"]), "name": row["name"], "status": row["status"],
                "framework": row["framework"], "requests_24h": last_day,
                "serving": fmt.serving(presenters.serving_of(row)),
                "requests": row.usage.requests, "p95": totals.p95_ms,
                "spark": json.dumps([daily.get(first_day + i, 0) for i in range(SPARK_DAYS)]),
            })
        filters = {"status": status or "", "q": q or "", "sort": sort}
        next_link = None
        if len(rows) == PAGE_SIZE:
            last = rows[-1]
            token = presenters.encode_cursor(sort, last[field], last["id"])
            next_link = "/ui/?" + urlencode({**{k: v for k, v in filters.items() if v},
                                              "cursor": token})
        return page(
            request, "models.html", title="Models", nav="models", models=items, total=total,
            filters=filters, sorts=SORTS, statuses=("active", "inactive", "deleted"),
            next_link=next_link, paged=cursor is not None,
            first_link="/ui/?" + urlencode({k: v for k, v in filters.items() if v}),
            spark_days=SPARK_DAYS,
        )
