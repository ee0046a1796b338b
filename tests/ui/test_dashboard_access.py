"""Every page: no serious or critical axe-core violation, no console error, readable at 360 px
without sideways scrolling, in the light and the dark scheme; screenshots for the README."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pytest

from tests.ui.browser import SCREENSHOTS, Dashboard, axe_violations, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def _pages(dashboard: Dashboard) -> dict[str, str]:
    """Every kind of page, with data on it: name -> path."""
    admin = dashboard.user("ada", "models", "admin")
    models = [dashboard.register(admin, name, description=f"The {name} model")
              for name in ("churn-predictor", "image-tagger")]
    for i, model in enumerate(models):
        dashboard.record_usage(admin, model["id"], 220 - 80 * i, days=30)
    # The first model has two versions, the second a canary at 10 %, and usage of both.
    canaried = dashboard.register_with_file(admin, "fraud-detector")
    dashboard.http.post(f"/api/models/{canaried['id']}/versions", headers=admin.headers,
                        data={"notes": "retrained"}, files={"file": ("w2.bin", b"weights-2")})
    dashboard.http.put(f"/api/models/{canaried['id']}", headers=admin.headers,
                       json={"serving": [{"version": 1, "weight": 90},
                                         {"version": 2, "weight": 10}]})
    dashboard.record_usage(admin, canaried["id"], 300, days=30)
    dashboard.record_version_usage(admin, canaried["id"], 1, 90, failures=1)
    dashboard.record_version_usage(admin, canaried["id"], 2, 10)
    models.insert(0, canaried)
    dashboard.http.put(f"/api/models/{models[2]['id']}", headers=admin.headers,
                       json={"status": "inactive"})  # the image tagger
    dashboard.http.post("/api/keys", headers=admin.headers, json={"name": "batch jobs",
                                                                   "models": None})
    first = models[0]["id"]
    return {
        "models": "/ui/", "model": f"/ui/models/{first}",
        "model-90d": f"/ui/models/{first}?range=90d", "model-past": f"/ui/models/{first}?version=1",
        "keys": "/ui/keys", "usage": "/ui/usage", "operations": "/ui/operations",
        "not-found": "/ui/models/00000000-0000-0000-0000-000000000000",
    }


def test_every_page_passes_the_accessibility_scan(
    dashboard: Dashboard, page: Page, backend: str
) -> None:
    page.allowed_errors = ("404",)  # type: ignore[attr-defined]  # the not-found page
    paths = _pages(dashboard)
    page.goto(f"{dashboard.url}/ui/login")
    assert axe_violations(page) == []
    page.goto(dashboard.link("ada"))
    assert axe_violations(page) == []
    sign_in(page, dashboard, dashboard.user("ada", "models", "admin"))
    for name, path in paths.items():
        page.goto(f"{dashboard.url}{path}")
        if page.locator("#charts").count():
            page.locator("#charts[data-drawn=true]").wait_for()
        assert axe_violations(page) == [], name
        if backend == "sqlite" and name in {"models", "model", "keys", "usage", "operations"}:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_fit_360_pixels_in_both_schemes(
    dashboard: Dashboard, browser: Browser, scheme: Literal["light", "dark"], backend: str
) -> None:
    paths = _pages(dashboard)
    context = browser.new_context(viewport={"width": 360, "height": 740}, color_scheme=scheme,
                                  timezone_id="Europe/Berlin")
    try:
        narrow = context.new_page()
        errors: list[str] = []
        narrow.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sign_in(narrow, dashboard, dashboard.user("ada", "models", "admin"))
        background = narrow.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(13, 17, 23)" if scheme == "dark" else "rgb(255, 255, 255)")
        for name, path in paths.items():
            if name == "not-found":
                continue
            narrow.goto(f"{dashboard.url}{path}")
            # Wide tables scroll inside their own box; the page itself never does.
            width = narrow.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, (name, width)
            assert axe_violations(narrow) == [], (name, scheme)
            if backend == "sqlite" and name == "model":
                narrow.screenshot(path=str(SCREENSHOTS / f"model-360-{scheme}.png"),
                                  full_page=True)
        assert errors == []
    finally:
        context.close()


def test_a_models_page_is_usable_by_keyboard(dashboard: Dashboard, page: Page) -> None:
    alice = dashboard.user("alice")
    model = dashboard.register(alice, "keyboard")
    sign_in(page, dashboard, alice)
    page.goto(f"{dashboard.url}/ui/models/{model['id']}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    reached = set()
    for _ in range(80):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id"))
    assert {"range", "bucket", "name", "description", "deactivate", "confirm_name",
            "delete"} <= reached
    # Deactivate by keyboard alone.
    page.focus("#deactivate")
    page.keyboard.press("Enter")
    page.wait_for_url("**saved=status")
    assert page.locator("#model-status").inner_text() == "inactive"
