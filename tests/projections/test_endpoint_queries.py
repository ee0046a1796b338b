"""The reads the prediction endpoint makes per call: a model's serving state and an API key's
row, each one primary-key look-up (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

from projections.models import queries
from services.container import Container
from services.models import Actor, Who
from tests.helpers import register

WHO = Who(actor="alice", correlation_id="c", actor_issuer="")


def test_a_keys_row_names_its_owner_models_hash_and_revocation(container: Container) -> None:
    owner = uuid.uuid4()
    model_ids = [register(container, owner, f"m{i}") for i in range(2)]
    named, _ = container.keys.create(owner, "named", model_ids, WHO)
    every, _ = container.keys.create(owner, "every", None, WHO)
    row = queries.api_key_row(container.store, named.id)
    assert row is not None
    assert (row.owner_id, row.models, row.revoked) == (owner, frozenset(model_ids), False)
    assert len(row.secret_sha256) == 64
    container.keys.revoke(owner, every.id, WHO)
    revoked = queries.api_key_row(container.store, every.id)
    assert revoked is not None
    assert (revoked.models, revoked.revoked) == (None, True)
    assert queries.api_key_row(container.store, uuid.uuid4()) is None


def test_a_models_serving_state_has_no_artifact_or_upstream_until_given(
    container: Container,
) -> None:
    owner = uuid.uuid4()
    row = container.models.register(Actor(owner, "c"), name="plain", framework="sklearn")
    state = queries.serving_state(container.store, row["id"])
    assert state == queries.ServingRow(
        owner_id=owner, name="plain", status="active", version=1, framework="sklearn",
        upstream_url=None, upstream_model=None, serving=(), latest_version=0, files={},
    )
