"""The ApiKey aggregate and the key text's rules, without any I/O."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from domain.api_key import (
    MODELS_MAX,
    NAME_MAX,
    ApiKey,
    check_key_models,
    parse_key,
    secret_matches,
)
from domain.errors import ValidationError

WHO = {"actor": "alice", "correlation_id": "req-1", "actor_issuer": "https://id.example"}
OWNER = uuid.uuid4()


def issue(**overrides: object) -> tuple[ApiKey, str]:
    values: dict[str, object] = {"owner_id": OWNER, "name": "ci", "models": None, **WHO}
    values.update(overrides)
    return ApiKey.issue(**values)  # type: ignore[arg-type]


class TestIssue:
    def test_the_text_names_the_key_and_only_the_secrets_sha256_is_recorded(self) -> None:
        key, text = issue()
        (created,) = key.collect_events()
        assert isinstance(created, ApiKey.Created)
        parsed = parse_key(text)
        assert parsed is not None
        key_id, secret = parsed
        assert key_id == key.id
        assert text == f"mlk_{key.id.hex}_{secret}"
        assert created.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in repr(vars(created))

    def test_every_key_has_its_own_256_bit_secret(self) -> None:
        secrets = {parse_key(issue()[1])[1] for _ in range(50)}  # type: ignore[index]
        assert len(secrets) == 50
        assert all(len(s) == 43 for s in secrets)  # 32 bytes, base64url without padding

    def test_the_creation_records_who_acted(self) -> None:
        (created,) = issue()[0].collect_events()
        assert isinstance(created, ApiKey.Created)
        assert (created.actor, created.correlation_id, created.actor_issuer) == (
            "alice", "req-1", "https://id.example"
        )

    def test_the_name_is_stripped(self) -> None:
        assert issue(name="  deploy bot ")[0].name == "deploy bot"

    @pytest.mark.parametrize("name", ["", "   ", "x" * (NAME_MAX + 1), "a\x00b"])
    def test_the_name_must_be_1_to_200_characters_without_nul(self, name: str) -> None:
        with pytest.raises(ValidationError) as error:
            issue(name=name)
        assert error.value.field == "name"

    def test_models_are_kept_once_each_in_the_order_given(self) -> None:
        first, second = uuid.uuid4(), uuid.uuid4()
        key, _ = issue(models=[second, first, second])
        assert key.models == [str(second), str(first)]

    @pytest.mark.parametrize("count", [0, MODELS_MAX + 1])
    def test_a_model_list_names_1_to_1000_models(self, count: int) -> None:
        with pytest.raises(ValidationError) as error:
            check_key_models([uuid.uuid4() for _ in range(count)])
        assert error.value.field == "models"

    def test_no_model_list_covers_every_model(self) -> None:
        assert issue(models=None)[0].models is None


class TestRevoke:
    def test_revoking_records_who_acted(self) -> None:
        key, _ = issue()
        key.collect_events()
        assert key.revoke(**WHO) is True
        (revoked,) = key.collect_events()
        assert isinstance(revoked, ApiKey.Revoked)
        assert revoked.actor == "alice"
        assert key.revoked

    def test_revoking_twice_changes_nothing(self) -> None:
        key, _ = issue()
        key.revoke(**WHO)
        key.collect_events()
        assert key.revoke(**WHO) is False
        assert key.collect_events() == []


class TestKeyText:
    def test_the_secret_matches_its_hash_only(self) -> None:
        key, text = issue()
        _, secret = parse_key(text)  # type: ignore[misc]
        assert secret_matches(secret, key.secret_sha256)
        assert not secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"),
                                  key.secret_sha256)

    @pytest.mark.parametrize("mangle", [
        lambda t: t.replace("mlk_", "mlx_"),  # prefix
        lambda t: t.upper(),  # hex id in upper case
        lambda t: t[:-1],  # secret too short
        lambda t: t + "A",  # secret too long
        lambda t: t[:-1] + "=",  # not base64url
        lambda t: t[:10] + t[11:],  # id too short
        lambda t: " " + t,
        lambda t: t + "\n",
        lambda _: "",
    ])
    def test_text_not_shaped_like_a_key_is_refused(self, mangle: object) -> None:
        _, text = issue()
        assert parse_key(text) is not None
        assert parse_key(mangle(text)) is None  # type: ignore[operator]
