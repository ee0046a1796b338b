"""``GET /api/admin/jobs``: the scheduler's run history (scope ``admin``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from api.auth import requires
from api.deps import ApiRequest, container
from api.errors import problem_responses
from api.tokens import SCOPE_ADMIN
from scheduler.history import JobRun, recent


class JobsController(Controller):
    path = "/admin/jobs"
    tags = ["operations"]  # noqa: RUF012 - Litestar's class attribute
    opt = requires(SCOPE_ADMIN)

    @get(
        "/",
        operation_id="getJobRuns",
        summary="The latest scheduler job runs, newest first",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403),
    )
    def job_runs(
        self,
        request: ApiRequest,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="Runs to return")] = 50,
        job: Annotated[
            str | None, QueryParameter(max_length=100, description="Only runs of this job")
        ] = None,
    ) -> list[JobRun]:
        return recent(container(request).store, limit=limit, job=job)
