"""The ``models`` projection's fold of API key events: ``api_keys`` row patches, no secret
in the clear. Pure and in memory, like the model events' fold."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.api_key import ApiKey, hash_secret, parse_key
from domain.model import Model
from projections.models.fold import RowPatch, fold_model_events
from projections.models.tables import API_KEYS

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
OWNER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
MODEL = uuid.UUID("00000000-0000-4000-8000-000000000001")
WHO = {"actor": "alice", "correlation_id": "req-1", "actor_issuer": "https://id.example"}


def at(tick: int) -> datetime:
    return T0 + timedelta(seconds=tick)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = itertools.count()
    monkeypatch.setattr(ApiKey.Event, "create_timestamp", staticmethod(lambda: at(next(ticks))))


def test_a_created_key_inserts_a_row_with_every_column_and_the_secrets_hash_only() -> None:
    key, text = ApiKey.issue(owner_id=OWNER, name="ci", models=[MODEL], **WHO)
    changes = fold_model_events(key.collect_events())
    assert changes.models == {}
    insert = changes.keys[key.id].insert
    assert insert is not None
    assert sorted(insert) == sorted(API_KEYS.column_names)
    parsed = parse_key(text)
    assert parsed is not None
    secret = parsed[1]
    assert insert == {
        "id": key.id, "owner_id": OWNER, "name": "ci", "models": json.dumps([str(MODEL)]),
        "secret_sha256": hash_secret(secret), "created_at": at(0), "revoked_at": None,
        "version": 1,
    }
    assert secret not in repr(insert)


def test_a_key_for_all_models_has_no_model_list() -> None:
    key, _ = ApiKey.issue(owner_id=OWNER, name="all", models=None, **WHO)
    insert = fold_model_events(key.collect_events()).keys[key.id].insert
    assert insert is not None
    assert insert["models"] is None


def test_a_revocation_sets_revoked_at_and_the_version() -> None:
    key, _ = ApiKey.issue(owner_id=OWNER, name="ci", models=None, **WHO)
    key.collect_events()
    key.revoke(**WHO)
    assert fold_model_events(key.collect_events()).keys == {
        key.id: RowPatch(updates={"revoked_at": at(1), "version": 2})
    }


def test_model_and_key_events_in_one_batch_patch_their_own_tables() -> None:
    model = Model.register(
        model_id=MODEL, owner_id=OWNER, name="m", description="", framework="onnx",
        endpoint_url="/v2/models/m", actor="alice", correlation_id="req-1",
    )
    key, _ = ApiKey.issue(owner_id=OWNER, name="ci", models=[MODEL], **WHO)
    changes = fold_model_events([*model.collect_events(), *key.collect_events()])
    assert list(changes.models) == [MODEL]
    assert list(changes.keys) == [key.id]
