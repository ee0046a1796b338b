"""Browser-test fixtures: Debian's Chromium (installed with apt on a fresh machine when we are
root), the real server on each backend, a page that fails its test on any console error."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from modelledger.bootstrap import build
from tests.conftest import make_settings
from tests.ui.browser import SECRET, Console, Dashboard, Server, ensure_chromium

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.fixture(scope="session")
def chromium() -> str:
    path = ensure_chromium()
    if path is None:
        if os.environ.get("MODELLEDGER_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (MODELLEDGER_REQUIRE_BROWSER) but not installed")
        pytest.skip("browser: no /usr/bin/chromium and it cannot be installed here")
    return path


# Per module, not per session: Playwright's sync API keeps an event loop running in this
# thread while it is open, and an async test after it (pytest-xdist may order one so) fails.
@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only with a browser

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def dashboard(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Dashboard]:
    settings = make_settings(backend, tmp_path, request, jwt_secret=SECRET)
    container = build(settings)
    server = Server(container).start()
    running = Dashboard(server)
    yield running
    running.close()
    server.stop()
    container.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # A fixed zone the windows accept, so the page's buckets are those the test asks for.
    made = browser.new_context(timezone_id="Europe/Berlin", locale="en-GB",
                               viewport={"width": 1280, "height": 900})
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Any]:
    made: Page = context.new_page()
    console = Console(made)
    made.console = console  # type: ignore[attr-defined]
    yield made
    console.expect_only(*getattr(made, "allowed_errors", ()))
