"""Signing in (by token, by one-time link), signing out, sessions across processes, CSRF."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner

from api.tokens import issue_token
from modelledger.bootstrap import build
from modelledger.cli import cli
from tests.faults.processes import Service
from tests.ui.browser import SECRET, Dashboard, Server, sign_in

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page


def _signed_in_client(dashboard: Dashboard, token: str) -> httpx.Client:
    """An HTTP client holding a dashboard session (signed in through the form, with CSRF)."""
    client = httpx.Client(base_url=dashboard.url, timeout=30)
    form = client.get("/ui/login")
    csrf = re.search(r'name="_csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/ui/login", data={"token": token, "_csrf_token": csrf.group(1)})
    assert answer.status_code == 303, answer.text
    return client


def test_sign_in_by_token_and_out(dashboard: Dashboard, page: Page) -> None:
    alice = dashboard.user("alice")
    sign_in(page, dashboard, alice)
    assert page.locator(".who").inner_text() == "alice"
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["ml_session"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Lax"
    page.click("text=Sign out")
    page.wait_for_url(f"{dashboard.url}/ui/login")
    # The old cookie is dead on the server, not only forgotten by the browser.
    stale = httpx.get(f"{dashboard.url}/ui/", cookies={"ml_session": session["value"]})
    assert stale.status_code == 303
    assert stale.headers["location"].startswith("/ui/login")


def test_a_token_the_api_refuses_is_refused(dashboard: Dashboard, page: Page) -> None:
    page.allowed_errors = ("401",)  # type: ignore[attr-defined]
    page.goto(f"{dashboard.url}/ui/login")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    assert "not accepted" in page.locator(".error").inner_text()
    no_scope = dashboard.user("carol", "usage:write")
    page.fill("#token", no_scope.token)
    page.click("button[type=submit]")
    assert "scope" in page.locator(".error").inner_text()
    page.allowed_errors = ("401", "403")  # type: ignore[attr-defined]


def _cli_environment(dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line configured like the running server (same data, same secret)."""
    settings = dashboard.container.settings
    for name, value in {"DATA_DIR": str(settings.data_dir), "JWT_SECRET": SECRET,
                        "DATABASE_URL": settings.database_url, "PG_SCHEMA": settings.pg_schema,
                        "BASE_URL": dashboard.url}.items():
        monkeypatch.setenv(f"MODELLEDGER_{name}", value)


def test_sign_in_by_one_time_link(
    dashboard: Dashboard, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cli_environment(dashboard, monkeypatch)
    printed = CliRunner().invoke(cli, ["login-url", "--sub", "dora"], catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    link = printed.output.strip()
    assert link.startswith(f"{dashboard.url}/ui/login/link?token=")
    dora = dashboard.user("dora")
    model = dashboard.register(dora, "dora-model")
    page.goto(link)
    page.click("#use-link")
    page.wait_for_url(f"{dashboard.url}/ui/")
    # The same user as a token with that subject: the model made through the API is here.
    assert page.locator(f"tr[data-model-id='{model['id']}']").count() == 1
    # A link is not a bearer token.
    token = link.split("token=", 1)[1]
    assert dashboard.http.get("/api/models", headers={"Authorization": f"Bearer {token}"}
                              ).status_code == 401
    # Used once: a second use is refused, also through another process over the same data.
    page.context.clear_cookies()
    page.goto(link)
    page.click("#use-link")
    assert "used already" in page.locator(".error").inner_text()
    page.allowed_errors = ("400",)  # type: ignore[attr-defined]


def test_the_demo_prints_a_sign_in_link_to_a_dashboard_with_data(
    dashboard: Dashboard, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cli_environment(dashboard, monkeypatch)
    printed = CliRunner().invoke(cli, ["demo", "--days", "3", "--scale", "0.01"],
                                 catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    link = printed.output.strip().splitlines()[-1]
    assert link.startswith(f"{dashboard.url}/ui/login/link?token=")
    page.goto(link)
    page.click("#use-link")
    page.wait_for_url(f"{dashboard.url}/ui/")
    assert page.locator(".who").inner_text() == "alice"
    assert page.locator("#models-table tr[data-model-id]").count() >= 3
    requests = page.locator("#models-table td.num").all_inner_texts()
    assert any(text not in {"0", "\u2013"} for text in requests)


def test_sessions_and_links_are_shared_by_every_process(dashboard: Dashboard) -> None:
    """Two servers over the same database (as ``serve --workers 2``): a session from one
    works on the other, and signing out on one ends it on both; a link used on one is spent
    on the other."""
    other_container = build(dashboard.container.settings)
    other = Server(other_container).start()
    try:
        client = _signed_in_client(dashboard, dashboard.user("erin").token)
        cookie = client.cookies["ml_session"]
        assert httpx.get(f"{other.url}/ui/", cookies={"ml_session": cookie}).status_code == 200
        csrf = client.cookies["ml_csrf"]
        client.post("/ui/logout", data={"_csrf_token": csrf})
        gone = httpx.get(f"{other.url}/ui/", cookies={"ml_session": cookie})
        assert gone.status_code == 303
        link = dashboard.link("frank")
        token = link.split("token=", 1)[1]
        with httpx.Client(base_url=dashboard.url) as first:
            first.get("/ui/login")
            used = first.post("/ui/login/link", data={"token": httpx.URL(link).params["token"],
                                                      "_csrf_token": first.cookies["ml_csrf"]})
            assert used.status_code == 303
        with httpx.Client(base_url=other.url) as second:
            second.get("/ui/login")
            again = second.post("/ui/login/link", data={"token": token.replace("%3D", "="),
                                                        "_csrf_token": second.cookies["ml_csrf"]})
            assert again.status_code == 400
            assert "used already" in again.text
    finally:
        other.stop()
        other_container.close()


def test_a_form_post_without_the_csrf_token_is_refused(dashboard: Dashboard) -> None:
    alice = dashboard.user("alice")
    model = dashboard.register(alice, "kept-name")
    client = _signed_in_client(dashboard, alice.token)
    refused = client.post(f"/ui/models/{model['id']}/edit", data={"name": "hijacked"})
    assert refused.status_code == 403
    wrong = client.post(f"/ui/models/{model['id']}/edit",
                        data={"name": "hijacked", "_csrf_token": "0" * 128})
    assert wrong.status_code == 403
    # A sign-in form posted from elsewhere (no CSRF cookie) is refused too.
    assert httpx.post(f"{dashboard.url}/ui/login", data={"token": alice.token}).status_code == 403
    assert dashboard.http.get(f"/api/models/{model['id']}", headers=alice.headers
                              ).json()["name"] == "kept-name"
    accepted = client.post(f"/ui/models/{model['id']}/edit",
                           data={"name": "renamed", "_csrf_token": client.cookies["ml_csrf"]})
    assert accepted.status_code == 303
    assert dashboard.http.get(f"/api/models/{model['id']}", headers=alice.headers
                              ).json()["name"] == "renamed"


def test_a_form_body_is_bounded(dashboard: Dashboard) -> None:
    alice = dashboard.user("alice")
    model = dashboard.register(alice, "bounded")
    client = _signed_in_client(dashboard, alice.token)
    huge = client.post(f"/ui/models/{model['id']}/edit", data={
        "name": "x", "description": "y" * 100_000, "_csrf_token": client.cookies["ml_csrf"]})
    assert huge.status_code == 413
    long = client.post(f"/ui/models/{model['id']}/edit", data={
        "name": "x", "description": "y" * 6_000, "_csrf_token": client.cookies["ml_csrf"]})
    assert long.status_code == 400  # over the form's own bound for the field


def test_every_dashboard_response_carries_a_strict_policy(dashboard: Dashboard) -> None:
    for path in ("/ui/login", "/ui/static/app.js", "/ui/no-such-page"):
        policy = httpx.get(f"{dashboard.url}{path}").headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "default-src 'none'" in policy


def test_sign_out_ends_the_session_in_every_serve_worker(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`modelledger serve --workers 2` as a user runs it: each request goes to either worker
    process; after signing out, none of them accepts the cookie."""
    url, schema = request.getfixturevalue("pg_schema") if backend == "postgres" else ("", "")
    serve = Service(tmp_path, url, schema or "public", workers=2)
    serve.start()
    try:
        assert len(serve.processes()) >= 3  # the server and its two workers
        token = issue_token(serve.secret, "grace", ["models"])
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            client.get("/ui/login")
            signed_in = client.post("/ui/login", data={
                "token": token, "_csrf_token": client.cookies["ml_csrf"]})
            assert signed_in.status_code == 303, signed_in.text
            cookie = client.cookies["ml_session"]
            # Fresh connections, so the kernel spreads them over both workers' accepts.
            assert {httpx.get(f"{serve.url}/ui/", cookies={"ml_session": cookie}).status_code
                    for _ in range(20)} == {200}
            client.post("/ui/logout", data={"_csrf_token": client.cookies["ml_csrf"]})
            assert {httpx.get(f"{serve.url}/ui/", cookies={"ml_session": cookie}).status_code
                    for _ in range(20)} == {303}
    finally:
        serve.stop()


def test_sign_in_pages_are_never_cached(dashboard: Dashboard) -> None:
    for path in ("/ui/login", dashboard.link("ivy").removeprefix(dashboard.url)):
        assert httpx.get(f"{dashboard.url}{path}").headers["cache-control"] == "no-store"
