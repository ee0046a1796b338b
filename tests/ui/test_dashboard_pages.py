"""The dashboard's pages in Chromium over the real server, on SQLite and PostgreSQL: what
each shows equals what the API answers, and each change made through a page is the API's."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.ui.browser import Dashboard, User, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _listed(page: Page) -> set[str]:
    return set(page.locator("#models-table tbody tr[data-model-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.modelId)"))


def test_models_page_lists_exactly_the_users_models(dashboard: Dashboard, page: Page) -> None:
    alice, bob = dashboard.user("alice"), dashboard.user("bob")
    mine = {dashboard.register(alice, f"alice-{i:02d}")["id"] for i in range(23)}
    dashboard.register(bob, "bob-model")
    quiet = dashboard.register(alice, "quiet-one")
    dashboard.http.put(f"/api/models/{quiet['id']}", headers=alice.headers,
                       json={"status": "inactive"})
    sign_in(page, dashboard, alice)
    assert page.locator("#model-count").inner_text() == "24 models"
    first = _listed(page)
    assert len(first) == 20  # a page
    page.click("#next-page")  # the API's keyset cursor
    page.wait_for_url("**cursor=*")
    second = _listed(page)
    assert first | second == mine | {quiet["id"]}
    assert not first & second
    page.goto(f"{dashboard.url}/ui/?status=inactive")
    assert _listed(page) == {quiet["id"]}
    page.goto(f"{dashboard.url}/ui/")
    page.fill("#q", "ALICE-1")
    page.select_option("#sort", "name")
    page.click("form.filters button")
    page.wait_for_url("**/ui/?q=ALICE-1*")
    names = page.locator("#models-table tbody th a").all_inner_texts()
    assert names == [f"alice-{i:02d}" for i in range(10, 20)]


def _api_buckets(dashboard: Dashboard, user: User, model_id: str, charts: Any) -> list[Any]:
    window, tz, start, end = (charts.get_attribute(f"data-{n}")
                              for n in ("window", "tz", "from", "to"))
    answer = dashboard.http.get(
        f"/api/models/{model_id}/usage", headers=user.headers,
        params={"window": window, "tz": tz, "from": start, "to": end},
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["buckets"])


def test_charts_plot_the_apis_buckets(dashboard: Dashboard, page: Page) -> None:
    alice = dashboard.user("alice")
    model = dashboard.register(alice, "busy")
    dashboard.record_usage(alice, model["id"], 400, days=80)
    sign_in(page, dashboard, alice)
    # A first visit straight to a chart: drawn in UTC, then once more in the browser's zone.
    page.context.clear_cookies(name="ml_tz")
    page.goto(f"{dashboard.url}/ui/models/{model['id']}?range=7d")
    page.locator("#charts[data-tz='Europe/Berlin'][data-drawn=true]").wait_for()
    custom = "range=custom&from=2026-10-05&to=2026-11-20&bucket=week"
    for query, window in (("range=7d", "day"), ("range=90d&bucket=week", "week"),
                          ("range=24h", "hour"), (custom, "week"), ("range=90d", "day")):
        page.goto(f"{dashboard.url}/ui/models/{model['id']}?{query}")
        charts = page.locator("#charts[data-drawn=true]")
        charts.wait_for()
        assert charts.get_attribute("data-tz") == "Europe/Berlin"  # the browser's zone
        assert charts.get_attribute("data-window") == window
        buckets = _api_buckets(dashboard, alice, model["id"], charts)
        assert buckets, query
        x, stacked, successes = json.loads(
            page.locator("#chart-requests").get_attribute("data-plotted") or "")
        assert x == [int(datetime.fromisoformat(b["start"]).timestamp()) for b in buckets]
        assert stacked == [b["successes"] + b["failures"] for b in buckets]
        assert successes == [b["successes"] for b in buckets]
        _, p50, p95, p99 = json.loads(
            page.locator("#chart-latency").get_attribute("data-plotted") or "")
        assert (p50, p95, p99) == tuple(
            [b[f"p{n}_response_ms"] for b in buckets] for n in (50, 95, 99))
        _, rate = json.loads(page.locator("#chart-success").get_attribute("data-plotted") or "")
        assert rate == [None if b["success_rate"] is None else b["success_rate"] * 100
                        for b in buckets]
    assert sum(stacked) > 0
    # A canvas per chart was drawn.
    assert page.locator("#charts canvas").count() == 3


def test_rename_deactivate_and_delete_through_the_page(dashboard: Dashboard, page: Page) -> None:
    alice = dashboard.user("alice-the-editor")
    model = dashboard.register(alice, "before")
    url = f"{dashboard.url}/ui/models/{model['id']}"
    sign_in(page, dashboard, alice)
    page.goto(url)
    page.fill("#name", "after")
    page.fill("#description", "renamed in the dashboard")
    page.click("#edit-form button[type=submit]")
    assert page.locator("#model-name").inner_text() == "after"
    api = dashboard.http.get(f"/api/models/{model['id']}", headers=alice.headers).json()
    assert (api["name"], api["description"]) == ("after", "renamed in the dashboard")
    page.click("#deactivate")
    assert page.locator("#model-status").inner_text() == "inactive"
    assert dashboard.http.get(f"/api/models/{model['id']}", headers=alice.headers
                              ).json()["status"] == "inactive"
    # The audit trail names the acting user; version 2 shows the state before deactivating.
    actors = page.locator("#audit-trail td.actor").all_inner_texts()
    assert actors
    assert all(a == "alice-the-editor" for a in actors)
    page.click("a[aria-label='Show version 2']")
    assert "after" in page.locator("#past-state").inner_text()
    assert "active" in page.locator("#past-state").inner_text()
    page.goto(url)
    page.once("dialog", lambda dialog: dialog.accept())
    page.fill("#confirm_name", "after")
    page.click("#delete")
    page.wait_for_url(f"{dashboard.url}/ui/")
    assert model["id"] not in _listed(page)
    assert dashboard.http.get(f"/api/models/{model['id']}", headers=alice.headers
                              ).json()["status"] == "deleted"


def test_create_and_revoke_a_key_through_the_page(dashboard: Dashboard, page: Page) -> None:
    alice = dashboard.user("alice")
    model = dashboard.register(alice, "served")
    sign_in(page, dashboard, alice)
    page.goto(f"{dashboard.url}/ui/keys")
    page.fill("#key-name", "ci key")
    page.select_option("#key-model", model["id"])
    page.click("#create-key button[type=submit]")
    secret = page.locator("#key-secret").input_value()
    keys = dashboard.http.get("/api/keys", headers=alice.headers).json()["items"]
    assert [(k["name"], k["models"]) for k in keys] == [("ci key", [model["id"]])]
    # The key works against the endpoint (it reaches the model: not 401).
    called = dashboard.http.get(f"/v2/models/{model['id']}",
                                headers={"Authorization": f"Bearer {secret}"})
    assert called.status_code != 401, called.text
    page.goto(f"{dashboard.url}/ui/keys")  # shown once: not on the page again
    assert page.locator("#key-secret").count() == 0
    assert secret not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[aria-label='Revoke ci key']")
    page.wait_for_url(f"{dashboard.url}/ui/keys")
    assert page.locator("#keys-table tr[data-key-id]").count() == 0
    assert dashboard.http.get("/api/keys", headers=alice.headers).json()["items"] == []


def test_another_users_model_is_404_like_a_missing_one(dashboard: Dashboard, page: Page) -> None:
    page.allowed_errors = ("404",)  # type: ignore[attr-defined]
    alice, bob = dashboard.user("alice"), dashboard.user("bob")
    theirs = dashboard.register(bob, "bobs-secret-model")
    sign_in(page, dashboard, alice)
    other = page.goto(f"{dashboard.url}/ui/models/{theirs['id']}")
    other_body = page.locator("main").inner_text()
    missing = page.goto(f"{dashboard.url}/ui/models/{uuid.uuid4()}")
    assert other is not None
    assert missing is not None
    assert other.status == missing.status == 404
    assert other_body == page.locator("main").inner_text()
    assert "bobs-secret-model" not in other_body
    # Not through a form either.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "ml_csrf")
    posted = page.request.post(f"{dashboard.url}/ui/models/{theirs['id']}/edit",
                               form={"name": "taken", "_csrf_token": csrf})
    assert posted.status == 404
    assert dashboard.http.get(f"/api/models/{theirs['id']}", headers=bob.headers
                              ).json()["name"] == "bobs-secret-model"


def test_operations_page_is_for_admins_only(dashboard: Dashboard, page: Page) -> None:
    page.allowed_errors = ("404",)  # type: ignore[attr-defined]
    sign_in(page, dashboard, dashboard.user("alice"))
    assert page.locator("nav a[href='/ui/operations']").count() == 0
    answer = page.goto(f"{dashboard.url}/ui/operations")
    assert answer is not None
    assert answer.status == 404
    page.click("text=Sign out")
    sign_in(page, dashboard, dashboard.user("root", "models", "admin"))
    page.click("nav a[href='/ui/operations']")
    names = page.locator("#projections tbody th").all_inner_texts()
    assert set(names) == {s.name for s in dashboard.container.projector.status()}


def test_usage_page_plots_the_summarys_buckets(dashboard: Dashboard, page: Page) -> None:
    alice, bob = dashboard.user("alice"), dashboard.user("bob")
    first, second = dashboard.register(alice, "first"), dashboard.register(alice, "second")
    dashboard.record_usage(alice, first["id"], 120, days=20)
    dashboard.record_usage(alice, second["id"], 45, days=5)
    dashboard.record_usage(bob, dashboard.register(bob, "bobs")["id"], 70, days=5)
    sign_in(page, dashboard, alice)
    page.goto(f"{dashboard.url}/ui/usage?range=30d")
    charts = page.locator("#charts[data-drawn=true]")
    charts.wait_for()
    summary = dashboard.http.get("/api/usage/summary", headers=alice.headers, params={
        n: charts.get_attribute(f"data-{a}")
        for n, a in (("window", "window"), ("tz", "tz"), ("from", "from"), ("to", "to"))
    }).json()
    x, stacked, _ = json.loads(page.locator("#chart-requests").get_attribute("data-plotted")
                               or "")
    assert x == [int(datetime.fromisoformat(b["start"]).timestamp())
                 for b in summary["buckets"]]
    assert stacked == [b["successes"] + b["failures"] for b in summary["buckets"]]
    assert sum(stacked) == 165  # alice's requests only
    assert page.locator("#total-requests").inner_text() == "165"
    rows = page.locator("#per-model tbody tr").all_inner_texts()
    assert [r.split("\t")[:2] for r in rows] == [["first", "120"], ["second", "45"]]


def test_another_users_key_cannot_be_revoked(dashboard: Dashboard, page: Page) -> None:
    alice, bob = dashboard.user("alice"), dashboard.user("bob")
    key = dashboard.http.post("/api/keys", headers=bob.headers,
                              json={"name": "bobs", "models": None}).json()
    sign_in(page, dashboard, alice)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "ml_csrf")
    refused = page.request.post(f"{dashboard.url}/ui/keys/{key['id']}/revoke",
                                form={"_csrf_token": csrf})
    assert refused.status == 404
    assert [k["id"] for k in dashboard.http.get("/api/keys", headers=bob.headers
                                                ).json()["items"]] == [key["id"]]


def test_a_refused_change_is_explained_on_the_page(dashboard: Dashboard, page: Page) -> None:
    page.allowed_errors = ("409", "422")  # type: ignore[attr-defined]
    alice = dashboard.user("alice")
    dashboard.register(alice, "taken")
    model = dashboard.register(alice, "mine")
    sign_in(page, dashboard, alice)
    page.goto(f"{dashboard.url}/ui/models/{model['id']}")
    page.fill("#name", "TAKEN")  # names are unique per owner, case-insensitively
    answer = page.expect_response(lambda r: r.request.method == "POST")
    with answer as posted:
        page.click("#edit-form button[type=submit]")
    assert posted.value.status == 409
    assert "Not changed" in page.locator("#form-error").inner_text()
    assert page.input_value("#name") == "TAKEN"  # what was typed stays, to correct it
    page.fill("#confirm_name", "not the name")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    page.locator("#form-error").wait_for()
    assert "type the model's name" in page.locator("#form-error").inner_text()
    assert dashboard.http.get(f"/api/models/{model['id']}", headers=alice.headers
                              ).json()["status"] == "active"
    page.goto(f"{dashboard.url}/ui/keys")
    page.fill("#key-name", " ")
    page.click("#create-key button[type=submit]")
    assert "Not created" in page.locator("#form-error").inner_text()
