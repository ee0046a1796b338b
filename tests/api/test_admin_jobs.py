"""`GET /api/admin/jobs`: the scheduler's run history, for admins only."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from scheduler import run_job
from services.container import Container
from tests.api.conftest import assert_problem, bearer


def test_admins_see_the_latest_job_runs_newest_first(
    client: TestClient[Any], container: Container
) -> None:
    run_job(container, "prune-history")
    run_job(container, "projection-watchdog")
    response = client.get("/api/admin/jobs", headers=bearer("ops", "admin"))
    assert response.status_code == 200
    runs = response.json()
    assert [r["job"] for r in runs] == ["projection-watchdog", "prune-history"]
    assert all(r["outcome"] == "ok" and r["finished_at"] for r in runs)
    only = client.get("/api/admin/jobs?job=prune-history&limit=5", headers=bearer("ops", "admin"))
    assert [r["job"] for r in only.json()] == ["prune-history"]


def test_job_history_needs_the_admin_scope(client: TestClient[Any]) -> None:
    assert_problem(client.get("/api/admin/jobs", headers=bearer("u", "models")), 403)
    assert_problem(client.get("/api/admin/jobs"), 401)


def test_an_excessive_limit_is_refused_naming_it(client: TestClient[Any]) -> None:
    response = client.get("/api/admin/jobs?limit=100000", headers=bearer("ops", "admin"))
    assert_problem(response, 400, "limit")
