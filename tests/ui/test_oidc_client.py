"""The relying party against a provider on a real port: discovery, PKCE, state, the code
exchange and every check of the ID token. The browser's part (following the provider's
redirect) is a plain HTTP GET here; tests/ui/test_oidc_browser.py has a real browser."""

from __future__ import annotations

import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from api.tokens import issue_token, user_id_of
from api.ui import oidc
from api.ui.oidc import OidcClient, SignInError, challenge_of, provider_label
from config.settings import SettingsError, check_provider_url, load_settings
from tests.ui.oidc_provider import OidcProvider, rsa_key, s256

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

REDIRECT = "http://127.0.0.1:9/ui/oidc/callback"
T = TypeVar("T")
COOKIE_KEY = secrets.token_bytes(32)


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    served = OidcProvider(subject=f"carol-{secrets.token_hex(4)}")
    served.redirect_uris.add(REDIRECT)
    yield served
    served.close()


def client_of(provider: OidcProvider, **options: Any) -> OidcClient:
    return OidcClient(provider.issuer, options.pop("client_id", provider.client_id),
                      redirect_uri=REDIRECT, cookie_key=COOKIE_KEY, **options)


async def authorize(url: str) -> dict[str, str]:
    """What the browser does at the provider: follow the authorisation URL to its redirect."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(url)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def sign_in(client: OidcClient) -> oidc.Identity:
    url, cookie = await client.begin("/ui/models")
    back = await authorize(url)
    identity, pending = await client.complete(cookie, back.get("state"), back.get("code"),
                                              back.get("error"))
    assert pending.next_path == "/ui/models"
    return identity


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``coroutine`` run on an event loop in a thread of its own: the browser tests'
    Playwright keeps its loop in the main thread for the whole session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def refused(status: int, coroutine: Coroutine[Any, Any, Any]) -> SignInError:
    with pytest.raises(SignInError) as caught:
        run(coroutine)
    assert caught.value.status_code == status, caught.value.reason
    return caught.value


class TestTheFlow:
    def test_a_sign_in_names_the_providers_subject_and_issuer(
        self, provider: OidcProvider
    ) -> None:
        identity = run(sign_in(client_of(provider)))
        assert (identity.subject, identity.issuer) == (provider.subject, provider.issuer)
        assert identity.name == provider.name

    def test_the_user_is_the_one_the_api_gives_the_providers_tokens(
        self, provider: OidcProvider
    ) -> None:
        identity = run(sign_in(client_of(provider)))
        claims = jwt.decode(provider.access_token(), options={"verify_signature": False})
        assert user_id_of(identity.subject, identity.issuer) == user_id_of(
            claims["sub"], claims["iss"])

    def test_the_authorisation_url_asks_for_a_code_with_an_s256_challenge(
        self, provider: OidcProvider
    ) -> None:
        client = client_of(provider, scopes="profile email")
        url, cookie = run(client.begin("/ui/"))
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        pending = client.unseal(cookie, query["state"])
        assert url.startswith(f"{provider.issuer}/authorize?")
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        assert query["code_challenge"] == s256(pending.verifier) == challenge_of(pending.verifier)
        assert query["nonce"] == pending.nonce
        assert query["scope"] == "openid profile email"  # openid always, first
        assert query["redirect_uri"] == REDIRECT
        assert 43 <= len(pending.verifier) <= 128  # RFC 7636 4.1

    def test_every_sign_in_has_its_own_state_nonce_and_verifier(
        self, provider: OidcProvider
    ) -> None:
        client = client_of(provider)
        seen = []
        for _ in range(3):
            url, cookie = run(client.begin("/ui/"))
            state = parse_qs(urlsplit(url).query)["state"][0]
            pending = client.unseal(cookie, state)
            seen.append((pending.state, pending.nonce, pending.verifier))
        assert len({value for triple in seen for value in triple}) == 9

    def test_the_exchange_sends_the_verifier_and_redirect_uri(
        self, provider: OidcProvider
    ) -> None:
        run(sign_in(client_of(provider)))
        (form,) = provider.token_requests
        assert form["grant_type"] == "authorization_code"
        assert form["redirect_uri"] == REDIRECT
        assert s256(form["code_verifier"]) == provider.authorize_requests[0]["code_challenge"]
        assert "client_secret" not in form  # a public client

    def test_a_confidential_client_authenticates_with_basic_auth(self) -> None:
        provider = OidcProvider(client_secret="s3cret:with&odd=chars")  # noqa: S106
        provider.redirect_uris.add(REDIRECT)
        try:
            client = client_of(provider, client_secret=provider.client_secret)
            identity = run(sign_in(client))
            assert identity.subject == provider.subject
            assert "client_secret" not in provider.token_requests[0]
            wrong = client_of(provider, client_secret="wrong")  # noqa: S106
            refused(400, sign_in(wrong))
        finally:
            provider.close()

    def test_client_secret_post_when_the_provider_offers_only_that(self) -> None:
        provider = OidcProvider(client_secret="post-secret")  # noqa: S106
        provider.discovery_overrides["token_endpoint_auth_methods_supported"] = [
            "client_secret_post"]
        provider.redirect_uris.add(REDIRECT)
        try:
            run(sign_in(client_of(provider, client_secret=provider.client_secret)))
            assert provider.token_requests[0]["client_secret"] == "post-secret"  # noqa: S105
        finally:
            provider.close()


class TestTheCallbackRefuses:
    def test_another_state(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        _, cookie = run(client.begin("/ui/"))
        error = refused(400, client.complete(cookie, "forged-state", "code", None))
        assert error.reason == "state mismatch"

    def test_an_answer_to_a_sign_in_started_elsewhere(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        url, _ = run(client.begin("/ui/"))
        back = run(authorize(url))
        refused(400, client.complete(None, back["state"], back["code"], None))
        assert provider.token_requests == []  # the code was never sent

    def test_a_cookie_signed_with_another_key(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        url, _ = run(client.begin("/ui/"))
        back = run(authorize(url))
        forged = jwt.encode({"aud": "modelledger:oidc-login", "exp": int(time.time()) + 60,
                             "state": back["state"], "nonce": "n", "verifier": "v" * 64},
                            secrets.token_bytes(32), algorithm="HS256")
        error = refused(400, client.complete(forged, back["state"], back["code"], None))
        assert error.reason == "login cookie invalid"

    def test_an_expired_cookie(
        self, provider: OidcProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        client = client_of(provider)
        monkeypatch.setattr(oidc, "LOGIN_SECONDS", -1)  # a cookie sealed 10 minutes ago
        url, cookie = run(client.begin("/ui/"))
        back = run(authorize(url))
        error = refused(400, client.complete(cookie, back["state"], back["code"], None))
        assert error.reason == "login cookie expired"

    def test_an_api_token_as_the_cookie(self, provider: OidcProvider) -> None:
        """A bearer token signed with the service's secret is not a login cookie."""
        secret = "x" * 48
        client = OidcClient.of(load_settings({}, jwt_secret=secret, oidc_issuer=provider.issuer,
                                              oidc_client_id=provider.client_id))
        token = issue_token(secret, "alice", ["models"])
        refused(400, client.complete(token, "state", "code", None))

    def test_the_providers_refusal(self, provider: OidcProvider) -> None:
        provider.deny = True
        error = refused(403, sign_in(client_of(provider)))
        assert error.reason == "provider error access_denied"

    def test_a_wrong_verifier(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        url, cookie = run(client.begin("/ui/"))
        back = run(authorize(url))
        pending = client.unseal(cookie, back["state"])
        other = client.seal(oidc.PendingLogin(pending.state, pending.nonce,
                                              secrets.token_urlsafe(48), "/ui/"))
        error = refused(400, client.complete(other, back["state"], back["code"], None))
        assert error.reason == "token endpoint refused the code: invalid_grant"

    def test_a_code_used_twice(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        url, cookie = run(client.begin("/ui/"))
        back = run(authorize(url))
        run(client.complete(cookie, back["state"], back["code"], None))
        refused(400, client.complete(cookie, back["state"], back["code"], None))

    def test_no_code(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        url, cookie = run(client.begin("/ui/"))
        back = run(authorize(url))
        refused(400, client.complete(cookie, back["state"], None, None))


class TestTheIdTokenMust:
    @pytest.mark.parametrize(("claims", "reason"), [
        ({"aud": "another-client"}, "Audience doesn't match"),
        ({"aud": ["modelledger-dashboard", "another"]}, "azp"),
        ({"aud": ["modelledger-dashboard", "another"], "azp": "another"}, "azp"),
        ({"nonce": "another-sign-in"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"iss": "https://another.example"}, "Invalid issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iat": None}, "iat"),
        ({"sub": ""}, "sub"),
        ({"sub": "x" * 256}, "sub"),
    ], ids=["aud", "aud-without-azp", "azp", "nonce", "no-nonce", "iss", "exp", "iat", "sub",
            "long-sub"])
    def test_hold(
        self, provider: OidcProvider, claims: dict[str, Any], reason: str
    ) -> None:
        provider.id_token_claims = claims
        error = refused(401, sign_in(client_of(provider)))
        assert reason in error.reason

    def test_be_signed_by_a_key_of_the_providers_jwks(self, provider: OidcProvider) -> None:
        provider.signing_key = "an-impostor"
        error = refused(401, sign_in(client_of(provider)))
        assert "Signature verification failed" in error.reason

    def test_name_a_key_the_provider_rotated_in(
        self, provider: OidcProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A kid not in the cached JWKS fetches it again (at most every JWKS_COOLDOWN)."""
        client = client_of(provider)
        run(sign_in(client))
        provider.kid = "provider-key-2"
        error = refused(401, sign_in(client))  # within the cool-down: the cached keys only
        assert "no signing key 'provider-key-2'" in error.reason
        monkeypatch.setattr(oidc, "JWKS_COOLDOWN", 0.0)
        assert run(sign_in(client)).subject == provider.subject
        assert provider.gets["/jwks"] == 2

    def test_several_audiences_with_azp_are_accepted(self, provider: OidcProvider) -> None:
        provider.id_token_claims = {"aud": [provider.client_id, "another"],
                                    "azp": provider.client_id}
        assert run(sign_in(client_of(provider))).subject == provider.subject

    def test_not_be_hs256_signed_with_anything(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        run(client.provider())
        token = jwt.encode({"iss": provider.issuer, "sub": "mallory", "aud": provider.client_id,
                            "exp": int(time.time()) + 60, "iat": int(time.time()),
                            "nonce": "n"}, "s" * 32, algorithm="HS256")
        error = refused(401, client.verify_id_token(token, "n"))
        assert "not accepted" in error.reason

    def test_name_a_known_kid(self, provider: OidcProvider) -> None:
        client = client_of(provider)
        now = int(time.time())
        token = jwt.encode({"iss": provider.issuer, "sub": "s", "aud": provider.client_id,
                            "exp": now + 60, "iat": now, "nonce": "n"},
                           rsa_key("provider-key-1"), algorithm="RS256",
                           headers={"kid": "unknown"})
        error = refused(401, client.verify_id_token(token, "n"))
        assert "no signing key 'unknown'" in error.reason


class TestTheShownName:
    @pytest.mark.parametrize(("claims", "shown"), [
        ({"name": "Carol Example", "preferred_username": "carol", "email": "c@x.example"},
         "Carol Example"),
        ({"name": None, "preferred_username": "carol", "email": "c@x.example"}, "carol"),
        ({"name": "  ", "preferred_username": 7, "email": "c@x.example"}, "c@x.example"),
        ({"name": "Carol\u202e\x00 \n Example"}, "Carol Example"),
        ({"name": "C" * 500}, "C" * oidc.MAX_NAME),
        ({"name": None}, ""),
    ], ids=["name", "preferred_username", "email", "control-characters", "long", "none"])
    def test_is_the_first_name_claim_with_text_in_it(
        self, provider: OidcProvider, claims: dict[str, Any], shown: str
    ) -> None:
        provider.id_token_claims = claims
        identity = run(sign_in(client_of(provider)))
        assert identity.name == shown
        assert identity.subject == provider.subject  # the name is shown, never who it is


class TestTheProvider:
    def test_discovery_must_name_the_configured_issuer(self, provider: OidcProvider) -> None:
        provider.discovery_overrides["issuer"] = "https://another.example"
        error = refused(502, client_of(provider).begin("/ui/"))
        assert error.reason == "discovery names another issuer"

    def test_discovery_must_offer_s256(self, provider: OidcProvider) -> None:
        provider.discovery_overrides["code_challenge_methods_supported"] = ["plain"]
        refused(502, client_of(provider).begin("/ui/"))

    def test_endpoints_must_be_https_off_loopback(self, provider: OidcProvider) -> None:
        provider.discovery_overrides["token_endpoint"] = "http://idp.example/token"  # noqa: S105
        error = refused(502, client_of(provider).begin("/ui/"))
        assert "token_endpoint must be an https URL" in error.reason

    def test_discovery_is_fetched_once_and_the_jwks_once(
        self, provider: OidcProvider
    ) -> None:
        client = client_of(provider)
        for _ in range(3):
            run(sign_in(client))
        assert provider.gets == {"/.well-known/openid-configuration": 1, "/jwks": 1,
                                 "/authorize": 3}

    def test_an_unreachable_provider_is_a_502(self) -> None:
        provider = OidcProvider()
        provider.close()  # nothing listens on its port any more
        error = refused(502, client_of(provider).begin("/ui/"))
        assert "ConnectError" in error.reason

    def test_an_answer_too_large_is_refused(self, provider: OidcProvider) -> None:
        provider.discovery_overrides["padding"] = "x" * (oidc.MAX_DOCUMENT_BYTES + 1)
        error = refused(502, client_of(provider).begin("/ui/"))
        assert "answered too much" in error.reason

    def test_a_slow_provider_times_out(
        self, provider: OidcProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(oidc, "HTTP_TIMEOUT", 0.2)
        original = provider.discovery

        def slow() -> dict[str, Any]:
            time.sleep(1)
            return original()

        monkeypatch.setattr(provider, "discovery", slow)
        error = refused(502, client_of(provider).begin("/ui/"))
        assert "Timeout" in error.reason

    def test_the_reason_never_holds_the_client_secret(self) -> None:
        provider = OidcProvider(client_secret="top-secret-value")  # noqa: S106
        provider.redirect_uris.add(REDIRECT)
        try:
            client = client_of(provider, client_secret="top-secret-wrong")  # noqa: S106
            error = refused(400, sign_in(client))
            assert "top-secret" not in error.reason + error.message
        finally:
            provider.close()


class TestSettings:
    def test_the_issuer_must_be_https_off_loopback(self) -> None:
        for url in ("https://idp.example", "http://127.0.0.1:8080", "http://[::1]:80/r",
                    "http://localhost:8080/realms/x"):
            assert check_provider_url(url, "X") == url
        for url in ("http://idp.example", "http://10.0.0.1", "ftp://idp.example", "idp.example"):
            with pytest.raises(SettingsError, match="MODELLEDGER_OIDC_ISSUER must be an https"):
                load_settings({"MODELLEDGER_OIDC_ISSUER": url, "MODELLEDGER_OIDC_CLIENT_ID": "c"})

    def test_issuer_and_client_id_come_together(self) -> None:
        for half in ({"MODELLEDGER_OIDC_ISSUER": "https://idp.example"},
                     {"MODELLEDGER_OIDC_CLIENT_ID": "c"}):
            with pytest.raises(SettingsError, match="must be set together"):
                load_settings(half)
        assert provider_label(load_settings({})) is None

    def test_the_button_names_the_provider(self) -> None:
        settings = load_settings({"MODELLEDGER_OIDC_ISSUER": "https://login.example.org/r",
                                  "MODELLEDGER_OIDC_CLIENT_ID": "c"})
        assert provider_label(settings) == "login.example.org"
        named = load_settings({}, oidc_issuer="https://login.example.org", oidc_client_id="c",
                              oidc_name="Example SSO")
        assert provider_label(named) == "Example SSO"

    def test_the_client_secret_is_not_in_the_settings_repr(self) -> None:
        settings = load_settings({"MODELLEDGER_OIDC_CLIENT_SECRET": "hush-hush"})
        assert settings.oidc_client_secret == "hush-hush"  # noqa: S105
        assert "hush-hush" not in repr(settings)

    def test_the_callback_is_under_the_base_url(self) -> None:
        client = OidcClient.of(load_settings(
            {}, jwt_secret="y" * 48, base_url="https://ledger.example/", oidc_issuer="https://i",
            oidc_client_id="c"))
        assert client.redirect_uri == "https://ledger.example/ui/oidc/callback"

