"""Who acted, by name: the audit trail records the caller's subject and issuer, and a user id
is derived from the issuer and the subject alone, so no two subjects share a user."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from api.tokens import user_id_of
from domain.model import Model
from domain.name_claim import NameClaim
from tests.api.conftest import assert_problem, bearer, signed

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsourcing.persistence import StoredEvent
    from litestar.testing import TestClient

    from services.container import Container

IDP = "https://idp.example"


def _history(client: TestClient[Any], model_id: str, headers: dict[str, str]) -> list[Any]:
    response = client.get(f"/api/models/{model_id}/history", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


class TestTheAuditTrailNamesPeople:
    def test_history_shows_the_subject_that_acted(
        self, client: TestClient[Any], register: Callable[..., dict[str, Any]]
    ) -> None:
        subject = f"alice-{uuid.uuid4()}"
        alice = bearer(subject)
        model = register(alice)
        client.put(f"/api/models/{model['id']}", json={"description": "v2"}, headers=alice)
        client.delete(f"/api/models/{model['id']}", headers=alice)
        items = _history(client, model["id"], alice)
        assert len(items) >= 3  # Registered, MetadataUpdated, Deleted, EndpointDeactivated
        assert {(i["actor"], i["actor_issuer"]) for i in items} == {(subject, "")}

    def test_history_shows_the_issuer_of_the_subject(
        self, client: TestClient[Any], register: Callable[..., dict[str, Any]]
    ) -> None:
        alice = signed(sub="alice", iss=IDP, scope="models")
        model = register(alice)
        [registered] = _history(client, model["id"], alice)
        assert (registered["actor"], registered["actor_issuer"]) == ("alice", IDP)
        assert "actor_issuer" not in registered["changes"]  # who acted is not a change

    def test_events_stored_before_the_issuer_field_read_as_they_were_written(
        self, client: TestClient[Any], container: Container
    ) -> None:
        subject = f"old-{uuid.uuid4()}"
        owner = user_id_of(subject)
        model = Model.register(
            model_id=uuid.uuid4(), owner_id=owner, name="legacy", description="",
            framework="onnx", endpoint_url="http://ledger.test/predict/x",
            actor=str(owner), correlation_id="before",
        )
        claim = NameClaim.claim(owner, "legacy", model.id)
        log = container.registry_log
        stored = [_old_layout(log.mapper.to_stored_event(e)) for e in model.collect_events()]
        stored += [log.mapper.to_stored_event(e) for e in claim.collect_events()]
        log.recorder.insert_events(stored)
        container.projector.catch_up("models")
        owner_headers = bearer(subject)
        detail = client.get(f"/api/models/{model.id}", headers=owner_headers)
        assert detail.status_code == 200, detail.text
        renamed = client.put(f"/api/models/{model.id}", json={"name": "renamed"},
                             headers=owner_headers)
        assert renamed.status_code == 200, renamed.text  # the aggregate loads from old events
        old, new = _history(client, str(model.id), owner_headers)
        assert (old["type"], old["actor"], old["actor_issuer"]) == ("Registered", str(owner), "")
        assert old["correlation_id"] == "before"
        assert (new["actor"], new["changes"]) == (subject, {"name": {"old": "legacy",
                                                                     "new": "renamed"}})


def _old_layout(stored: StoredEvent) -> StoredEvent:
    """The stored event as the code before ``actor_issuer`` wrote it: the same MessagePack
    array without its last element."""
    fields = msgspec.msgpack.decode(stored.state)
    assert fields[-1] == ""  # the new field, empty for a caller without an issuer
    return type(stored)(
        originator_id=stored.originator_id, originator_version=stored.originator_version,
        topic=stored.topic, state=msgspec.msgpack.encode(fields[:-1]),
    )


SPELLINGS: dict[str, Callable[[uuid.UUID], str]] = {
    "canonical": str,
    "upper case": lambda u: str(u).upper(),
    "braces": lambda u: "{" + str(u) + "}",
    "urn": lambda u: u.urn,
    "hex": lambda u: u.hex,
}


class TestNoTwoSubjectsShareAUser:
    def test_subjects_without_an_issuer_keep_their_user_ids(self) -> None:
        # Existing deployments' users (tokens of `modelledger token`) keep their models.
        assert user_id_of("alice") == uuid.UUID("cb09eaab-ac16-584e-8d91-b2ba59f3fe9c")

    def test_every_subject_and_issuer_maps_to_its_own_user(self) -> None:
        victim = user_id_of("alice")
        assert user_id_of(str(victim)) != victim
        assert user_id_of("alice", IDP) != victim
        assert user_id_of("alice", IDP) != user_id_of("alice", "https://other.example")

    @pytest.mark.parametrize("spelling", list(SPELLINGS))
    def test_a_subject_spelling_another_users_id_is_another_user(
        self, client: TestClient[Any], register: Callable[..., dict[str, Any]], spelling: str
    ) -> None:
        victim = f"alice-{uuid.uuid4()}"
        model = register(bearer(victim))
        impostor = bearer(SPELLINGS[spelling](user_id_of(victim)))
        assert_problem(client.get(f"/api/models/{model['id']}", headers=impostor), 404)
        assert client.get("/api/models", headers=impostor).json()["items"] == []
        usage = {"request_id": "r", "response_time_ms": 1, "input_bytes": 1, "output_bytes": 1,
                 "success": True}
        assert_problem(client.post(f"/api/models/{model['id']}/usage", json=usage,
                                   headers=impostor), 404)

    def test_the_same_subject_from_two_issuers_is_two_users(
        self, client: TestClient[Any], register: Callable[..., dict[str, Any]]
    ) -> None:
        subject = f"alice-{uuid.uuid4()}"
        first = signed(sub=subject, iss=IDP, scope="models")
        model = register(first)
        url = f"/api/models/{model['id']}"
        assert client.get(url, headers=first).status_code == 200
        assert_problem(client.get(url, headers=signed(sub=subject, iss="https://other.example",
                                                      scope="models")), 404)
        assert_problem(client.get(url, headers=bearer(subject)), 404)  # no issuer: a third
