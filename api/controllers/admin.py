"""Operations endpoints (scope ``admin``)."""

from __future__ import annotations

from litestar import Controller, get

from api.auth import requires
from api.deps import ApiRequest, container
from api.errors import problem_responses
from api.schemas import ProjectionState
from api.tokens import SCOPE_ADMIN


def projection_states(statuses: list[object]) -> list[ProjectionState]:
    return [
        ProjectionState(s.name, s.source, s.position, s.head, s.lag)  # type: ignore[attr-defined]
        for s in statuses
    ]


class AdminController(Controller):
    path = "/projections"
    tags = ["operations"]  # noqa: RUF012 - Litestar's class attribute
    opt = requires(SCOPE_ADMIN)

    @get(
        "/",
        operation_id="getProjections",
        summary="Position, log head and lag of every projection",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403),  # 400: a query parameter it lacks
    )
    def projections(self, request: ApiRequest) -> list[ProjectionState]:
        return projection_states(list(container(request).projector.status()))
