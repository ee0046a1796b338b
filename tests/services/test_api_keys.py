"""``ApiKeyService`` on SQLite and PostgreSQL: keys created, listed with their usage, revoked
and checked against the projection table alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.api_key import LIVE_KEYS_MAX, ApiKey, KeyLimitError, KeyNotFoundError, parse_key
from domain.errors import ModelNotFoundError, ValidationError
from domain.usage import record_usage
from modelledger.bootstrap import build
from services.audit import trail
from services.container import Container
from services.keys import KeyGrant
from services.models import Actor, Who
from tests.helpers import T0, register


def who(name: str = "alice") -> Who:
    return Who(actor=name, correlation_id=f"c-{name}", actor_issuer="https://id.example")


def metered(container: Container, model_id: uuid.UUID, owner: uuid.UUID, key_id: uuid.UUID,
            times: list[datetime]) -> None:
    """Usage events as the endpoint records them: with the key that called."""
    container.usage_log.record([
        record_usage(
            model_id=model_id, owner_id=owner, request_id=uuid.uuid4().hex, occurred_at=at,
            response_time_ms=3.0, input_bytes=10, output_bytes=20, success=True,
            api_key_id=str(key_id), caller="app", now=T0 + timedelta(days=1),
        )
        for at in times
    ])
    container.projector.catch_up("usage")


class TestCreate:
    def test_a_new_key_authenticates_and_is_listed_without_its_secret(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "m")
        view, text = container.keys.create(owner, " ci ", [model_id], who())
        assert (view.name, view.models, view.requests, view.last_used_at) == (
            "ci", [model_id], 0, None
        )
        assert container.keys.authenticate(text) == KeyGrant(
            view.id, owner, frozenset({model_id})
        )
        assert container.keys.get_keys(owner) == [view]
        assert text not in repr(view)

    def test_a_key_without_models_covers_every_model_of_its_owner(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        _, text = container.keys.create(owner, "all", None, who())
        grant = container.keys.authenticate(text)
        assert grant is not None
        assert grant.models is None
        later = uuid.uuid4()
        assert grant.covers(later, owner)
        assert not grant.covers(later, uuid.uuid4())

    @pytest.mark.parametrize("whose", ["unknown", "another owner's", "deleted"])
    def test_a_key_names_only_the_owners_live_models(
        self, container: Container, whose: str
    ) -> None:
        owner = uuid.uuid4()
        if whose == "unknown":
            model_id = uuid.uuid4()
        elif whose == "another owner's":
            model_id = register(container, uuid.uuid4(), "theirs")
        else:
            model_id = register(container, owner, "gone")
            container.models.delete(Actor(owner, "c"), model_id)
        mine = register(container, owner, "mine")
        with pytest.raises(ModelNotFoundError):
            container.keys.create(owner, "ci", [mine, model_id], who())
        assert container.keys.get_keys(owner) == []

    def test_a_bad_name_is_refused_before_anything_is_recorded(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        with pytest.raises(ValidationError):
            container.keys.create(owner, "", None, who())
        assert container.keys.get_keys(owner) == []

    def test_an_owner_holds_at_most_100_live_keys(self, container: Container) -> None:
        owner = uuid.uuid4()
        views = [container.keys.create(owner, f"k{i}", None, who())[0]
                 for i in range(LIVE_KEYS_MAX)]
        with pytest.raises(KeyLimitError, match="at most 100"):
            container.keys.create(owner, "one too many", None, who())
        container.keys.create(uuid.uuid4(), "another owner's", None, who())
        container.keys.revoke(owner, views[0].id, who())
        container.keys.create(owner, "in its place", None, who())
        assert len(container.keys.get_keys(owner)) == LIVE_KEYS_MAX


class TestAuthenticate:
    def test_a_wrong_secret_or_malformed_text_is_refused(self, container: Container) -> None:
        view, text = container.keys.create(uuid.uuid4(), "ci", None, who())
        _, secret = parse_key(text)  # type: ignore[misc]
        other = "A" if secret[0] != "A" else "B"
        for refused in (f"mlk_{view.id.hex}_{other}{secret[1:]}",
                        f"mlk_{uuid.uuid4().hex}_{secret}", text[:-1], "", "Bearer " + text):
            assert container.keys.authenticate(refused) is None


class TestRevoke:
    def test_a_revoked_key_no_longer_authenticates_nor_is_listed(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        kept, _ = container.keys.create(owner, "kept", None, who())
        gone, text = container.keys.create(owner, "gone", None, who())
        container.keys.revoke(owner, gone.id, who())
        assert container.keys.authenticate(text) is None
        assert container.keys.get_keys(owner) == [kept]
        container.keys.revoke(owner, gone.id, who())  # again: nothing changes
        assert len(container.keys.get_key_events(gone.id)) == 2

    def test_a_revocation_reaches_another_process_at_once(self, container: Container) -> None:
        other_process = build(container.settings)
        try:
            owner = uuid.uuid4()
            view, text = container.keys.create(owner, "ci", None, who())
            assert other_process.keys.authenticate(text) is not None
            container.keys.revoke(owner, view.id, who())
            assert other_process.keys.authenticate(text) is None
        finally:
            other_process.close()

    @pytest.mark.parametrize("whose", ["unknown", "another owner's", "a model's id"])
    def test_only_the_owners_keys_can_be_revoked(self, container: Container, whose: str) -> None:
        owner = uuid.uuid4()
        view, text = container.keys.create(owner, "ci", None, who())
        key_id = {
            "unknown": uuid.uuid4(),
            "another owner's": container.keys.create(uuid.uuid4(), "x", None, who())[0].id,
            "a model's id": register(container, owner, "m"),
        }[whose]
        with pytest.raises(KeyNotFoundError):
            container.keys.revoke(owner, key_id, who("mallory"))
        with pytest.raises(KeyNotFoundError):
            container.keys.revoke(uuid.uuid4(), view.id, who("mallory"))
        assert container.keys.authenticate(text) is not None


class TestUsage:
    def test_a_keys_requests_and_last_use_come_from_the_usage_it_made(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "m")
        used, _ = container.keys.create(owner, "used", None, who())
        container.keys.create(owner, "idle", None, who())
        metered(container, model_id, owner, used.id, [T0 + timedelta(minutes=m) for m in (5, 1)])
        metered(container, model_id, owner, used.id, [T0 + timedelta(minutes=3)])
        listed = {view.name: view for view in container.keys.get_keys(owner)}
        assert (listed["used"].requests, listed["used"].last_used_at) == (
            3, T0 + timedelta(minutes=5)
        )
        assert (listed["idle"].requests, listed["idle"].last_used_at) == (0, None)


class TestAuditTrail:
    def test_the_trail_names_who_created_and_revoked_without_the_secret(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "m")
        view, text = container.keys.create(owner, "ci", [model_id], who("alice"))
        container.keys.revoke(owner, view.id, who("bob"))
        created, revoked = trail(container.keys.get_key_events(view.id))
        assert (created.type, created.actor, created.actor_issuer) == (
            "Created", "alice", "https://id.example"
        )
        assert created.changes == {
            "owner_id": str(owner), "name": "ci", "models": [str(model_id)]
        }
        assert (revoked.type, revoked.actor, revoked.changes) == ("Revoked", "bob", {})
        _, secret = parse_key(text)  # type: ignore[misc]
        assert secret not in repr(created)

    def test_a_model_id_has_no_key_trail(self, container: Container) -> None:
        model_id = register(container, uuid.uuid4(), "m")
        with pytest.raises(KeyNotFoundError):
            container.keys.get_key_events(model_id)


def test_key_events_are_registry_events_of_their_own_aggregate(container: Container) -> None:
    view, _ = container.keys.create(uuid.uuid4(), "ci", None, who())
    key: object = container.registry_log.repository.get(view.id)
    assert isinstance(key, ApiKey)
    assert key.created_on < datetime.now(UTC)
