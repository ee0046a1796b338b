"""Bearer tokens: what is refused (401 with WWW-Authenticate), scopes (403), the token command."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.exceptions import NotAuthorizedException
from litestar.testing import TestClient

from api.app import create_app
from api.tokens import TokenVerifier, resolve_secret, user_id_of
from config.settings import load_settings
from modelledger.bootstrap import build
from modelledger.cli import cli
from tests.api.conftest import SECRET, assert_problem, bearer


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "mallory", "scope": "models admin",
            "exp": datetime.now(UTC) + timedelta(hours=1), **extra}


REFUSED = {
    "missing": None,
    "not bearer": "Basic dXNlcjpwdw==",
    "malformed": "Bearer not-a-jwt",
    "expired": "Bearer " + jwt.encode(_claims(exp=datetime.now(UTC) - timedelta(minutes=5)),
                                      SECRET, algorithm="HS256"),
    "wrong signature": "Bearer " + jwt.encode(_claims(), "another-secret-another-secret-xx",
                                              algorithm="HS256"),
    "alg none": "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "."
                + _b64({"sub": "mallory", "scope": "admin", "exp": 4102444800}) + ".",
    "no exp": "Bearer " + jwt.encode({"sub": "mallory"}, SECRET, algorithm="HS256"),
    "HS384": "Bearer " + jwt.encode(_claims(), SECRET, algorithm="HS384"),
    # Header values the WWW-Authenticate description must not carry verbatim.
    "non-latin-1 alg": "Bearer " + _b64({"alg": "\u2603", "typ": "JWT"}) + "."
                       + _b64({"sub": "mallory", "exp": 4102444800}) + ".c2ln",
    "control characters in alg": "Bearer " + _b64({"alg": "HS256\r\nX-Evil: 1"}) + "."
                                 + _b64({"sub": "mallory", "exp": 4102444800}) + ".c2ln",
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("url", ["/api/models", "/api/projections"])
def test_refused_tokens_answer_401_with_www_authenticate(
    client: TestClient[Any], case: str, url: str
) -> None:
    header = REFUSED[case]
    response = client.get(url, headers={} if header is None else {"Authorization": header})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith('Bearer realm="modelledger"')
    assert "x-evil" not in response.headers


def test_missing_scope_answers_403(client: TestClient[Any]) -> None:
    assert_problem(client.get("/api/projections", headers=bearer("u", "models")), 403)
    assert_problem(client.get("/api/models", headers=bearer("gw", "usage:write")), 403)


def test_admin_sees_projection_lag(client: TestClient[Any]) -> None:
    states = client.get("/api/projections", headers=bearer("ops", "admin")).json()
    assert {s["name"] for s in states} == {"models", "usage"}
    assert all(s["lag"] == s["head"] - s["position"] for s in states)


def test_health_metrics_and_schema_need_no_token(client: TestClient[Any]) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").json()["status"] == "ready"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "modelledger_projection_lag_events" in metrics.text
    assert client.get("/schema/openapi.json").status_code == 200


def test_rs256_tokens_are_accepted_with_a_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    verifier = TokenVerifier(SECRET, public)
    token = jwt.encode(_claims(), key, algorithm="RS256")
    assert verifier.verify(token).scopes == {"models", "admin"}
    # Algorithm confusion: HS256 signed with the public key as HMAC secret is refused.
    claims = _claims(exp=int(_claims()["exp"].timestamp()))
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(NotAuthorizedException):
        verifier.verify(forged)


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODELLEDGER_JWT_SECRET", "MODELLEDGER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELLEDGER_DATA_DIR", str(tmp_path))


def test_token_command_prints_a_token_the_api_accepts(sqlite_env: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["token", "--sub", "carol", "--scope", "models usage:write",
                                      "--ttl", "2h"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert "\n" not in token
    secret_file = tmp_path / "jwt-secret"
    assert secret_file.exists()
    settings = load_settings({}, data_dir=tmp_path)
    assert resolve_secret(settings) == secret_file.read_text().strip()  # generated once, reused
    claims = jwt.decode(token, resolve_secret(settings), algorithms=["HS256"])
    assert claims["scope"] == "models usage:write"
    assert 7000 < claims["exp"] - claims["iat"] <= 7200
    container = build(settings)
    try:
        with TestClient(create_app(container)) as client:
            response = client.get("/api/models", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
    finally:
        container.close()


def test_token_command_rejects_unknown_scopes(sqlite_env: None) -> None:
    result = CliRunner().invoke(cli, ["token", "--sub", "x", "--scope", "root"])
    assert result.exit_code != 0


def test_the_generated_secret_is_owner_only_and_reused(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path)
    first = resolve_secret(settings)
    assert len(first) >= 48
    assert resolve_secret(settings) == first
    secret_files = [p for p in tmp_path.iterdir() if "jwt" in p.name]
    assert len(secret_files) == 1  # no temporary file left behind
    assert secret_files[0].stat().st_mode & 0o077 == 0


class TestTokenCache:
    def test_a_cached_token_is_refused_once_expired(self) -> None:
        verifier = TokenVerifier(SECRET)
        token = bearer("u", ttl=timedelta(seconds=30))["Authorization"].removeprefix("Bearer ")
        assert verifier.verify(token).subject == "u"
        assert token in verifier._verified  # the cache is what is under test
        expired = bearer("u", ttl=timedelta(seconds=-5))["Authorization"].removeprefix("Bearer ")
        # As if it had been verified while still valid: the entry's exp has passed since.
        verifier._verified[expired] = (verifier._verified[token][0], time.time() - 1)
        with pytest.raises(NotAuthorizedException):
            verifier.verify(expired)
        assert expired not in verifier._verified

    def test_only_valid_tokens_are_cached(self) -> None:
        verifier = TokenVerifier(SECRET)
        for bad in ("not-a-token", bearer("u")["Authorization"][7:] + "x"):
            with pytest.raises(NotAuthorizedException):
                verifier.verify(bad)
        assert verifier._verified == {}

    def test_tokens_refused_by_the_issuer_or_audience_checks_are_not_cached(self) -> None:
        verifier = TokenVerifier(SECRET, issuer="https://idp.example", audience="ledger")
        good = jwt.encode(_claims(iss="https://idp.example", aud="ledger"), SECRET,
                          algorithm="HS256")
        for bad in (jwt.encode(_claims(iss="https://evil.example", aud="ledger"), SECRET,
                               algorithm="HS256"),
                    jwt.encode(_claims(iss="https://idp.example", aud="other"), SECRET,
                               algorithm="HS256")):
            for _ in range(2):  # refused again: nothing remembered it
                with pytest.raises(NotAuthorizedException):
                    verifier.verify(bad)
        assert list(verifier._verified) == []
        principal = verifier.verify(good)
        assert principal is verifier.verify(good)  # the cached one, with the token's identity
        assert principal.user_id == user_id_of("mallory", "https://idp.example")
        assert (principal.subject, principal.issuer) == ("mallory", "https://idp.example")
