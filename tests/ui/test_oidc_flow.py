"""OIDC sign-in through the real app over HTTP (SQLite and PostgreSQL), against the test
provider on a real port; this client plays the browser, following each redirect by hand."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.tokens import issue_token
from api.ui import oidc
from tests.conftest import make_settings
from tests.ui.oidc_provider import OidcProvider

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from config.settings import Settings
    from services.container import Container

SECRET = "oidc-test-secret-long-enough-for-hs256-0123456789abcdef"  # noqa: S105 - a test secret
BASE = "http://testserver.local"
CALLBACK = f"{BASE}/ui/oidc/callback"


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    served = OidcProvider(subject=f"carol-{secrets.token_hex(4)}")
    served.redirect_uris.add(CALLBACK)
    yield served
    served.close()


@pytest.fixture
def oidc_enabled() -> bool:
    return True


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
             provider: OidcProvider, oidc_enabled: bool) -> Settings:  # noqa: FBT001 - a fixture
    configured = {"oidc_issuer": provider.issuer, "oidc_client_id": provider.client_id,
                  "oidc_client_secret": provider.client_secret} if oidc_enabled else {}
    # The API trusts the provider's tokens too: the same person, through either door.
    return make_settings(backend, tmp_path, request, jwt_secret=SECRET, base_url=BASE,
                         jwt_jwks_url=f"{provider.issuer}/jwks", **configured)


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(container), base_url=BASE) as test_client:
        yield test_client


def start(client: TestClient[Any], next_path: str = "/ui/") -> str:
    """GET /ui/oidc/login: the provider's authorisation URL it redirects to."""
    answer = client.get("/ui/oidc/login", params={"next": next_path}, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def at_provider(url: str) -> str:
    """The browser at the provider, which approves at once: the callback URL it sends back to."""
    answer = httpx.get(url)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?"), location
    return location


def sign_in(client: TestClient[Any], next_path: str = "/ui/") -> httpx.Response:
    return client.get(at_provider(start(client, next_path)), follow_redirects=False)


def create_model(client: TestClient[Any], token: str, name: str) -> None:
    answer = client.post("/api/models", json={"name": name, "framework": "onnx"},
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text


def assert_refused(answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-store"
    assert words in answer.text
    assert "ml_session" not in answer.headers.get("set-cookie", "")


class TestSigningIn:
    def test_lands_on_the_page_asked_for_with_a_session(self, client: TestClient[Any]) -> None:
        answer = sign_in(client, "/ui/keys")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/keys"
        assert client.cookies.get("ml_session")

    def test_shows_the_models_made_through_the_api_with_the_providers_tokens(
        self, client: TestClient[Any], provider: OidcProvider
    ) -> None:
        mine, theirs = f"carol-model-{secrets.token_hex(3)}", f"dave-model-{secrets.token_hex(3)}"
        create_model(client, provider.access_token(), mine)
        create_model(client, issue_token(SECRET, provider.subject, ["models"]), theirs)
        assert sign_in(client).status_code == 303
        page = client.get("/ui/")
        assert page.status_code == 200
        assert mine in page.text
        # The same subject without the provider's issuer is another user.
        assert theirs not in page.text

    def test_the_login_cookie_is_httponly_lax_scoped_and_short_lived(
        self, client: TestClient[Any]
    ) -> None:
        answer = client.get("/ui/oidc/login", follow_redirects=False)
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{oidc.LOGIN_COOKIE}=")
        for attribute in ("HttpOnly", "Path=/ui/oidc", "SameSite=lax", "Max-Age=600"):
            assert attribute in cookie
        assert answer.headers["cache-control"] == "no-store"
        assert "Secure" not in cookie  # plain HTTP here; HTTPS requests get Secure

    def test_the_login_cookie_is_secure_over_https(self, container: Container) -> None:
        with TestClient(create_app(container), base_url="https://testserver.local") as secure:
            answer = secure.get("/ui/oidc/login", follow_redirects=False)
        assert "Secure" in answer.headers["set-cookie"]

    def test_the_callback_spends_the_login(self, client: TestClient[Any]) -> None:
        callback = at_provider(start(client))
        answer = client.get(callback, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["cache-control"] == "no-store"
        cleared = f'{oidc.LOGIN_COOKIE}="";'
        assert any(c.startswith(cleared) for c in answer.headers.get_list("set-cookie"))
        assert_refused(client.get(callback, follow_redirects=False), 400, "Start again")

    def test_another_process_takes_the_callback(
        self, client: TestClient[Any], container: Container
    ) -> None:
        """No memory of the login in the process: the cookie holds it (serve --workers N)."""
        callback = at_provider(start(client))
        with TestClient(create_app(container), base_url=BASE) as other:
            other.cookies.update(client.cookies)
            answer = other.get(callback, follow_redirects=False)
            assert answer.status_code == 303, answer.text
            assert other.get("/ui/", follow_redirects=False).status_code == 200

    def test_a_next_on_another_host_lands_on_the_dashboard(self, client: TestClient[Any]) -> None:
        answer = sign_in(client, "https://evil.example/ui/")
        assert answer.headers["location"] == "/ui/"


class TestTheSignInPage:
    def test_offers_the_provider_keeping_the_page_asked_for(
        self, client: TestClient[Any], provider: OidcProvider
    ) -> None:
        page = client.get("/ui/login", params={"next": "/ui/keys"})
        assert page.status_code == 200
        # No MODELLEDGER_OIDC_NAME here: the button names the issuer's host.
        assert "Sign in with 127.0.0.1" in page.text
        assert 'href="/ui/oidc/login?next=%2Fui%2Fkeys"' in page.text
        answer = client.get("/ui/oidc/login?next=%2Fui%2Fkeys", follow_redirects=False)
        landed = client.get(at_provider(answer.headers["location"]), follow_redirects=False)
        assert landed.headers["location"] == "/ui/keys"
        assert provider.authorize_requests


class TestTheCallbackRefuses:
    def test_a_wrong_state(self, client: TestClient[Any]) -> None:
        callback = at_provider(start(client))
        query = parse_qs(urlsplit(callback).query)
        answer = client.get("/ui/oidc/callback", params={"code": query["code"][0],
                                                         "state": "forged"},
                            follow_redirects=False)
        assert_refused(answer, 400, "does not belong to the sign-in started in this browser")

    def test_no_login_cookie(self, client: TestClient[Any]) -> None:
        callback = at_provider(start(client))
        client.cookies.clear()
        assert_refused(client.get(callback, follow_redirects=False), 400,
                       "not started in this browser")

    def test_a_code_redeemed_with_another_sign_ins_verifier(
        self, client: TestClient[Any], provider: OidcProvider
    ) -> None:
        """A code caught on its way is useless without its verifier: the first sign-in's code
        sent with the second sign-in's cookie (its state matches, its verifier does not)."""
        first = at_provider(start(client))
        second = at_provider(start(client))  # the cookie is now the second sign-in's
        code = parse_qs(urlsplit(first).query)["code"][0]
        state = parse_qs(urlsplit(second).query)["state"][0]
        answer = client.get("/ui/oidc/callback", params={"code": code, "state": state},
                            follow_redirects=False)
        assert_refused(answer, 400, "did not accept this sign-in")
        assert provider.token_requests[-1]["code"] == code  # refused by the provider's check

    @pytest.mark.parametrize("claims", [
        {"aud": "another-client"}, {"nonce": "another-sign-in"}, {"iss": "https://other.example"},
    ], ids=["audience", "nonce", "issuer"])
    def test_an_id_token_that_does_not_hold(
        self, client: TestClient[Any], provider: OidcProvider, claims: dict[str, Any]
    ) -> None:
        provider.id_token_claims = claims
        assert_refused(sign_in(client), 401, "could not be verified")
        assert client.get("/ui/", follow_redirects=False).status_code == 303  # still out

    def test_an_id_token_signed_by_another_key(
        self, client: TestClient[Any], provider: OidcProvider
    ) -> None:
        provider.signing_key = "an-impostor"
        assert_refused(sign_in(client), 401, "could not be verified")

    def test_the_providers_refusal(self, client: TestClient[Any], provider: OidcProvider) -> None:
        provider.deny = True
        assert_refused(sign_in(client), 403, "did not sign you in (access_denied)")

    def test_an_unreachable_provider_is_a_clear_page(
        self, client: TestClient[Any], provider: OidcProvider
    ) -> None:
        provider.close()
        answer = client.get("/ui/oidc/login", follow_redirects=False)
        assert_refused(answer, 502, "could not be reached")

    def test_a_code_longer_than_any_provider_sends(
        self, client: TestClient[Any], provider: OidcProvider
    ) -> None:
        state = parse_qs(urlsplit(at_provider(start(client))).query)["state"][0]
        answer = client.get("/ui/oidc/callback", params={"code": "c" * 5000, "state": state},
                            follow_redirects=False)
        assert answer.status_code == 400
        assert provider.token_requests == []  # refused before anything is sent on


class TestNoSecretLeaks:
    @pytest.fixture
    def provider(self) -> Iterator[OidcProvider]:
        served = OidcProvider(client_secret="the-client-secret-value")  # noqa: S106
        served.redirect_uris.add(CALLBACK)
        yield served
        served.close()

    def test_a_confidential_client_signs_in(self, client: TestClient[Any]) -> None:
        assert sign_in(client).status_code == 303

    def test_a_failed_sign_in_shows_and_logs_no_secret_or_token(
        self, client: TestClient[Any], provider: OidcProvider, caplog: pytest.LogCaptureFixture
    ) -> None:
        provider.id_token_claims = {"aud": "another-client"}
        with caplog.at_level(logging.DEBUG):
            answer = sign_in(client)
        assert answer.status_code == 401
        logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        assert "oidc sign-in refused" in logged
        for text in (answer.text, logged):
            assert provider.client_secret not in text
            assert "eyJ" not in text  # no token, ID or access, nor the login cookie


@pytest.mark.parametrize("oidc_enabled", [False])
def test_without_a_provider_there_is_no_oidc_sign_in(client: TestClient[Any]) -> None:
    assert "Sign in with" not in client.get("/ui/login").text
    assert client.get("/ui/oidc/login", follow_redirects=False).status_code == 404
    assert client.get("/ui/oidc/callback", follow_redirects=False).status_code == 404

