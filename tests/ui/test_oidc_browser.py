"""OIDC sign-in end to end in Chromium: the sign-in page's button, the provider's redirect and
the callback's, through the real server (uvicorn) on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from api.tokens import issue_token
from api.ui import oidc
from modelledger.bootstrap import build
from tests.conftest import make_settings
from tests.ui.browser import Server, axe_violations, free_port
from tests.ui.oidc_provider import OidcProvider

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

SECRET = "oidc-browser-secret-long-enough-for-hs256-0123456789abcdef"  # noqa: S105 - a test secret
PROVIDER_NAME = "Test Identity"


@dataclass
class Deployment:
    url: str
    provider: OidcProvider
    http: httpx.Client

    def register(self, token: str, name: str) -> None:
        answer = self.http.post("/api/models", json={"name": name, "framework": "onnx"},
                                headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201, answer.text


@pytest.fixture
def deployment(backend: str, tmp_path: Path, request: pytest.FixtureRequest
               ) -> Iterator[Deployment]:
    """The service with an identity provider: the port is chosen first, since the provider
    must know the callback URL (BASE_URL/ui/oidc/callback) before the app is made."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = OidcProvider(subject=f"carol-{secrets.token_hex(4)}")
    provider.redirect_uris.add(f"{url}{oidc.CALLBACK_PATH}")
    settings = make_settings(
        backend, tmp_path, request, jwt_secret=SECRET, base_url=url,
        jwt_jwks_url=f"{provider.issuer}/jwks", oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id, oidc_name=PROVIDER_NAME,
    )
    container = build(settings)
    server = Server(container, port=port).start()
    http = httpx.Client(base_url=url, timeout=30)
    try:
        yield Deployment(url, provider, http)
    finally:
        http.close()
        server.stop()
        container.close()
        provider.close()


def cookies_of(page: Page) -> dict[str, Any]:
    return {c["name"]: c for c in page.context.cookies()}


def test_signing_in_through_the_provider(deployment: Deployment, page: Page) -> None:
    provider = deployment.provider
    mine = f"carol-model-{secrets.token_hex(3)}"
    deployment.register(provider.access_token(), mine)  # through the API, the provider's token
    someone_elses = f"other-model-{secrets.token_hex(3)}"
    deployment.register(issue_token(SECRET, provider.subject, ["models"]), someone_elses)

    page.goto(f"{deployment.url}/ui/")
    page.wait_for_url(f"{deployment.url}/ui/login?*")
    assert axe_violations(page) == []  # the sign-in page with the provider's button
    button = page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}")
    button.click()  # to the provider, which approves, back to the callback, on to /ui/
    page.wait_for_url(f"{deployment.url}/ui/")

    assert page.locator(".who").inner_text() == provider.name  # not the opaque subject
    assert page.get_by_text(mine).count() == 1
    assert page.get_by_text(someone_elses).count() == 0
    page.get_by_role("link", name=mine).click()  # its audit trail names them the same way
    who = page.locator("#audit-trail td.actor").first.inner_text()
    assert who.startswith(provider.name)
    assert provider.subject not in who
    page.go_back()
    (asked,) = provider.authorize_requests
    assert asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"] == f"{deployment.url}{oidc.CALLBACK_PATH}"
    cookies = cookies_of(page)
    assert cookies["ml_session"]["httpOnly"]
    assert oidc.LOGIN_COOKIE not in cookies  # spent by the callback

    # Signed out, and in again: a new sign-in of its own.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{deployment.url}/ui/login*")
    page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
    page.wait_for_url(f"{deployment.url}/ui/")
    assert page.get_by_text(mine).count() == 1
    first, second = provider.authorize_requests
    assert first["state"] != second["state"]
    assert first["nonce"] != second["nonce"]


def test_a_sign_in_the_provider_refuses_is_a_clear_page(
    deployment: Deployment, page: Page
) -> None:
    deployment.provider.deny = True
    # The console's one error is the page's own 403 status.
    page.allowed_errors = ("403",)  # type: ignore[attr-defined]
    page.goto(f"{deployment.url}/ui/login")
    page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
    page.wait_for_url(f"{deployment.url}{oidc.CALLBACK_PATH}?*")
    assert page.get_by_role("heading").first.inner_text() == "403 · Sign-in failed"
    assert "did not sign you in (access_denied)" in page.locator("main").inner_text()
    assert "ml_session" not in cookies_of(page)
    assert axe_violations(page) == []
    page.get_by_role("link", name="Start again").click()
    page.wait_for_url(f"{deployment.url}/ui/login")
