"""Session and sign-in-link rules, without a browser (both backends)."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.tokens import issue_token, user_id_of
from api.ui.links import issue_link_token, link_key, verify_link_token
from api.ui.sessions import MAX_SESSIONS_PER_USER, SessionStore, safe_next
from modelledger.bootstrap import build
from projections.store.base import timestamp_text
from tests.conftest import make_settings
from tests.ui.browser import SECRET

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from services.container import Container

KEY = link_key("a-secret-long-enough-for-hs256-0123456789abcdef")


class TestSessions:
    def test_a_session_names_the_apis_user(self, container: Container) -> None:
        sessions = SessionStore(container.store)
        sid = sessions.start("alice", "https://idp.example", frozenset({"models"}))
        found = sessions.find(sid)
        assert found is not None
        assert found.user_id == user_id_of("alice", "https://idp.example")
        assert found.principal().scopes == {"models"}

    def test_a_session_shows_the_providers_name_for_its_user(
        self, container: Container
    ) -> None:
        sessions = SessionStore(container.store)
        named = sessions.find(sessions.start("u-7f3a", "", frozenset({"models"}), "Carol Example"))
        unnamed = sessions.find(sessions.start("alice", "", frozenset({"models"})))
        assert named is not None
        assert unnamed is not None
        assert (named.principal().name, named.principal().subject) == ("Carol Example", "u-7f3a")
        assert unnamed.principal().name == ""

    def test_sessions_started_before_display_names_keep_working(
        self, container: Container
    ) -> None:
        store = container.store
        sid = "a-session-from-before"
        with store.write("ui_sessions") as cur:  # the table as the version before made it
            cur.execute(
                "CREATE TABLE ui_sessions (id_sha256 TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
                "subject TEXT NOT NULL, issuer TEXT NOT NULL, scopes TEXT NOT NULL, "
                "created_at TEXT NOT NULL, expires_at TEXT NOT NULL)"
            )
            cur.execute(
                store.sql("INSERT INTO ui_sessions VALUES (?, ?, ?, ?, ?, ?, ?)"),
                (hashlib.sha256(sid.encode()).hexdigest(), str(user_id_of("alice", "")),
                 "alice", "", "models", timestamp_text(datetime.now(UTC)),
                 timestamp_text(datetime.now(UTC) + timedelta(hours=1))),
            )
        sessions = SessionStore(store)
        old = sessions.find(sid)
        assert old is not None
        assert (old.subject, old.name) == ("alice", "")
        new = sessions.find(sessions.start("bob", "", frozenset({"models"}), "Bob"))
        assert new is not None
        assert new.name == "Bob"

    def test_an_ended_or_expired_session_is_gone(self, container: Container) -> None:
        sessions = SessionStore(container.store)
        sid = sessions.start("alice", "", frozenset({"models"}))
        sessions.end(sid)
        assert sessions.find(sid) is None
        expired = SessionStore(container.store, ttl=timedelta(seconds=-1))
        assert expired.find(expired.start("alice", "", frozenset({"models"}))) is None
        assert sessions.find("made-up") is None

    def test_a_user_holds_a_bounded_number_of_sessions(self, container: Container) -> None:
        sessions = SessionStore(container.store)
        sids = [sessions.start("bob", "", frozenset({"models"}))
                for _ in range(MAX_SESSIONS_PER_USER + 3)]
        live = [sid for sid in sids if sessions.find(sid) is not None]
        assert live == sids[-MAX_SESSIONS_PER_USER:]

    def test_a_link_is_used_once(self, container: Container) -> None:
        sessions = SessionStore(container.store)
        claims = verify_link_token(KEY, issue_link_token(KEY, "carol", ["models"]))
        assert claims is not None
        assert sessions.use_link(claims.jti, claims.expires_at)
        assert not sessions.use_link(claims.jti, claims.expires_at)


class TestLinks:
    def test_a_link_carries_its_user(self) -> None:
        claims = verify_link_token(KEY, issue_link_token(KEY, "dora", ["models", "admin"],
                                                         issuer="https://idp.example"))
        assert claims is not None
        assert (claims.subject, claims.issuer, claims.scopes) == (
            "dora", "https://idp.example", frozenset({"models", "admin"}))

    @pytest.mark.parametrize("token", [
        issue_link_token(KEY, "dora", ["models"], ttl=timedelta(seconds=-5)),  # expired
        issue_link_token(link_key("another-secret-long-enough-0123456789abcdef"), "d", []),
        jwt.encode({"sub": "dora", "exp": 9_999_999_999, "jti": "j", "aud": "x"}, KEY),
        "not-a-token",
    ])
    def test_an_expired_forged_or_foreign_link_is_refused(self, token: str) -> None:
        assert verify_link_token(KEY, token) is None

    def test_unknown_scopes_are_dropped(self) -> None:
        claims = verify_link_token(KEY, issue_link_token(KEY, "eve", ["models", "root"]))
        assert claims is not None
        assert claims.scopes == {"models"}


@pytest.mark.parametrize(("given", "kept"), [
    ("/ui/keys", "/ui/keys"), ("/ui/models/x?range=7d", "/ui/models/x?range=7d"),
    ("https://evil.example/ui/", "/ui/"), ("//evil.example/ui/", "/ui/"), ("/api/models", "/ui/"),
    ("/ui/\\\\evil", "/ui/"), ("", "/ui/"), (None, "/ui/"),
])
def test_only_dashboard_paths_are_followed_after_sign_in(given: str | None, kept: str) -> None:
    assert safe_next(given) == kept


def test_cookies_are_secure_over_https(app_container: Container) -> None:
    container = app_container
    for base, secure in (("https://ledger.example", True), ("http://ledger.example", False)):
        with TestClient(create_app(container), base_url=base) as client:
            _check_cookies(client, secure=secure)
    # TLS ended at a proxy: the request is plain HTTP, the public base URL says HTTPS.
    container.settings = dataclasses.replace(container.settings,
                                             base_url="https://ledger.example")
    with TestClient(create_app(container), base_url="http://127.0.0.1:8000") as client:
        # Plain HTTP from the proxy; Secure all the same, for the browser on the HTTPS side.
        assert "Secure" in client.get("/ui/login").headers["set-cookie"]


def _check_cookies(client: TestClient[Any], *, secure: bool) -> None:
    form = client.get("/ui/login")
    assert ("Secure" in form.headers["set-cookie"]) is secure
    signed_in = client.post("/ui/login", follow_redirects=False, data={
        "token": issue_token(SECRET, "alice", ["models"]),
        "_csrf_token": client.cookies["ml_csrf"],
    })
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("ml_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert ("Secure" in cookie) is secure


@pytest.fixture
def app_container(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Container]:
    built = build(make_settings(backend, tmp_path, request, jwt_secret=SECRET))
    yield built
    built.close()
