"""A model's versions through its page, in Chromium, on SQLite and PostgreSQL: upload,
promote, roll back, a canary split, the comparison (equal to the API's), removal."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from tests.ui.browser import Dashboard, User, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Page


def _serving(dashboard: Dashboard, user: User, model_id: str) -> list[tuple[int, int]]:
    body = dashboard.http.get(f"/api/models/{model_id}", headers=user.headers).json()
    return [(s["version"], s["weight"]) for s in body["serving"]]


def _versions(dashboard: Dashboard, user: User, model_id: str) -> list[dict[str, Any]]:
    return list(dashboard.http.get(f"/api/models/{model_id}/versions", headers=user.headers
                                   ).json()["items"])


def test_upload_promote_roll_back_and_split_through_the_page(
    dashboard: Dashboard, page: Page
) -> None:
    alice = dashboard.user("alice")
    model = dashboard.register_with_file(alice, "ranker")
    url = f"{dashboard.url}/ui/models/{model['id']}"
    sign_in(page, dashboard, alice)
    page.goto(url)
    assert page.locator("#serving").inner_text() == "v1"
    file: FilePayload = {"name": "w2.bin", "mimeType": "application/octet-stream",
                         "buffer": b"weights-2"}
    page.set_input_files("#version-file", files=[file])
    page.fill("#version-notes", "retrained on November")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**saved=version-2*")
    listed = _versions(dashboard, alice, model["id"])
    assert [(v["number"], v["notes"], v["size_bytes"]) for v in listed] == [
        (1, "", 9), (2, "retrained on November", 9)]
    assert _serving(dashboard, alice, model["id"]) == [(1, 100)]  # uploaded, not yet serving
    page.click("#serve-2")  # promote
    page.wait_for_url("**saved=serving*")
    assert page.locator("#serving").inner_text() == "v2"
    assert _serving(dashboard, alice, model["id"]) == [(2, 100)]
    assert page.locator("#serve-1").inner_text() == "Roll back to v1"
    page.click("#serve-1")  # roll back
    page.wait_for_url("**saved=serving*")
    assert _serving(dashboard, alice, model["id"]) == [(1, 100)]
    page.select_option("#stable", "1")
    page.select_option("#canary", "2")
    page.fill("#percent", "10")
    page.click("#canary-form button[type=submit]")
    page.wait_for_url("**saved=serving*")
    assert page.locator("#serving").inner_text() == "v1 90 %, v2 10 %"
    assert _serving(dashboard, alice, model["id"]) == [(1, 90), (2, 10)]
    # The models list names what serves; the audit trail who did each of it.
    page.goto(f"{dashboard.url}/ui/")
    assert page.locator(f"tr[data-model-id='{model['id']}'] td.serving").inner_text() == (
        "v1 90 %, v2 10 %")
    page.goto(url)
    trail = page.locator("#audit-trail tbody").inner_text()
    assert "VersionUploaded" in trail
    assert "ServingChanged" in trail
    assert set(page.locator("#audit-trail td.actor").all_inner_texts()) == {"alice"}


def test_the_comparison_is_the_apis_and_a_serving_version_cannot_be_removed(
    dashboard: Dashboard, page: Page
) -> None:
    page.allowed_errors = ("409",)  # type: ignore[attr-defined]
    alice = dashboard.user("alice")
    model = dashboard.register_with_file(alice, "scorer")
    dashboard.http.post(f"/api/models/{model['id']}/versions", headers=alice.headers,
                        files={"file": ("w2.bin", b"weights-2")})
    dashboard.http.put(f"/api/models/{model['id']}", headers=alice.headers,
                       json={"serving": [{"version": 1, "weight": 50},
                                         {"version": 2, "weight": 50}]})
    dashboard.record_version_usage(alice, model["id"], 1, 300, failures=3)
    dashboard.record_version_usage(alice, model["id"], 2, 300, slow=True, failures=40)
    sign_in(page, dashboard, alice)
    page.goto(f"{dashboard.url}/ui/models/{model['id']}?range=24h")
    page.click("#show-per-version")
    page.wait_for_url("**per_version=true*")
    charts = page.locator("#charts")
    compared = page.locator("#comparison")
    api = dashboard.http.get(
        f"/api/models/{model['id']}/versions/compare", headers=alice.headers,
        params={"a": 1, "b": 2, "from": compared.get_attribute("data-from"),
                "to": compared.get_attribute("data-to")},
    ).json()
    start, end = (datetime.fromisoformat(api[n]) for n in ("start", "end"))
    assert end - start == timedelta(hours=24)  # by default the last 24 hours, as the API's
    table = page.locator("#comparison tbody").inner_text()
    requests = re.search(r"Requests\s+(\S+)\s+(\S+)", table)
    assert requests is not None
    assert (requests.group(1), requests.group(2)) == (
        str(api["a"]["requests"]), str(api["b"]["requests"]))
    assert api["a"]["requests"] == api["b"]["requests"] == 300
    assert page.locator("#verdict").inner_text() == api["verdict"]["summary"]
    assert api["verdict"]["b_worse"]
    # Each version's requests per window, plotted as GET .../usage?group_by=version answers.
    grouped = dashboard.http.get(f"/api/models/{model['id']}/usage", headers=alice.headers,
                                 params={n: charts.get_attribute(f"data-{n}")
                                         for n in ("window", "tz", "from", "to")}
                                 | {"group_by": "version"}).json()
    page.locator("#chart-versions[data-plotted]").wait_for()
    _, *plotted = json.loads(page.locator("#chart-versions").get_attribute("data-plotted") or "")
    assert plotted == [[b["requests"] for b in v["buckets"]] for v in grouped["by_version"]]
    assert [sum(series) for series in plotted] == [300, 300]
    # v2 serves half the traffic: it has no remove button, and a forged post is refused (409).
    assert page.locator("#remove-2").count() == 0
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "ml_csrf")
    forced = page.request.post(f"{dashboard.url}/ui/models/{model['id']}/versions/2/remove",
                               form={"_csrf_token": csrf})
    assert forced.status == 409
    page.click("#serve-1")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#remove-2")
    page.wait_for_url("**saved=removed*")
    assert page.locator("tr[data-version='2'] td.weight").inner_text() == "removed"
    assert _versions(dashboard, alice, model["id"])[1]["removed_at"] is not None


def test_an_upload_without_the_csrf_token_is_refused(dashboard: Dashboard) -> None:
    alice = dashboard.user("alice")
    model = dashboard.register_with_file(alice, "guarded")
    with httpx.Client(base_url=dashboard.url, timeout=30) as client:
        client.get("/ui/login")
        client.post("/ui/login", data={"token": alice.token,
                                       "_csrf_token": client.cookies["ml_csrf"]})
        url = f"/ui/models/{model['id']}/versions"
        files = {"file": ("w2.bin", b"weights-2")}
        assert client.post(url, files=files).status_code == 403
        assert client.post(url, params={"csrf": "0" * 128}, files=files).status_code == 403
        assert len(_versions(dashboard, alice, model["id"])) == 1
        accepted = client.post(url, params={"csrf": client.cookies["ml_csrf"]}, files=files)
        assert accepted.status_code == 303, accepted.text
        assert len(_versions(dashboard, alice, model["id"])) == 2
