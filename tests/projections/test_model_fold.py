"""The ``models`` projection's fold, as a specification: registry events in, row patches out.

Pure and in memory: the events come from the ``Model`` aggregate's own commands and no
database is involved. A clock fixture gives the n-th event of each test the time ``at(n)``.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.model import Model, ModelStatus
from domain.name_claim import NameClaim
from domain.upstream import NO_UPSTREAM, Upstream
from domain.usage import record_usage
from projections.models.fold import RowPatch, fold_model_events
from projections.models.tables import MODEL_VIEW

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
OWNER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
MODEL = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_MODEL = uuid.UUID("00000000-0000-4000-8000-000000000002")
WHO = {"actor": "user-1", "correlation_id": "req-1"}


def at(tick: int) -> datetime:
    """The time of the ``tick``-th model event of a test (counting from 0)."""
    return T0 + timedelta(seconds=tick)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model events get the times ``at(0)``, ``at(1)``, ... in the order they are triggered."""
    ticks = itertools.count()
    monkeypatch.setattr(Model.Event, "create_timestamp", staticmethod(lambda: at(next(ticks))))


def registered(model_id: uuid.UUID = MODEL, **overrides: Any) -> Model:
    """A new model whose ``Registered`` event is still pending."""
    values: dict[str, Any] = {
        "model_id": model_id, "owner_id": OWNER, "name": "resnet",
        "description": "an image classifier", "framework": "torch",
        "endpoint_url": f"/predict/{model_id}", **WHO,
    }
    values.update(overrides)
    return Model.register(**values)


def existing(model_id: uuid.UUID = MODEL) -> Model:
    """A model whose registration (event ``at(0)``, version 1) was already projected."""
    model = registered(model_id)
    model.collect_events()
    return model


def model_patches(events: Any) -> dict[uuid.UUID, RowPatch]:
    """The ``model_view`` patches a batch folds into (it holds no key events)."""
    changes = fold_model_events(events)
    assert changes.keys == {}
    return changes.models


def patch_of(model: Model) -> RowPatch:
    """The one patch that the model's pending events fold into."""
    patches = model_patches(model.collect_events())
    assert list(patches) == [model.id]
    return patches[model.id]


def registered_row(**changes: Any) -> dict[str, Any]:
    """The ``model_view`` row of ``registered()`` as first projected, with ``changes``."""
    row: dict[str, Any] = {
        "id": MODEL,
        "owner_id": OWNER,
        "name": "resnet",
        "description": "an image classifier",
        "framework": "torch",
        "status": "active",
        "version": 1,
        "endpoint_url": f"/predict/{MODEL}",
        "endpoint_active": True,
        "artifact_filename": None,
        "artifact_size_bytes": None,
        "artifact_sha256": None,
        "artifact_removed_at": None,
        "created_at": at(0),
        "updated_at": at(0),
        "deleted_at": None,
        "upstream_url": None,
        "upstream_model": None,
        "serving": None,
        "latest_version": 0,
    }
    row.update(changes)
    return row


class TestRegistration:
    def test_a_registration_inserts_a_row_with_every_model_view_column(self) -> None:
        insert = patch_of(registered()).insert
        assert insert is not None
        assert sorted(insert) == sorted(MODEL_VIEW.column_names)

    def test_a_registration_inserts_an_active_model_with_an_active_endpoint_and_no_artifact(
        self,
    ) -> None:
        assert patch_of(registered()).insert == registered_row()

    def test_a_registration_updates_no_existing_row(self) -> None:
        assert patch_of(registered()).updates == {}


class TestMetadataUpdate:
    def test_a_rename_patches_only_the_name_and_version(self) -> None:
        model = existing()
        model.update_metadata(name="resnet-50", **WHO)
        assert patch_of(model) == RowPatch(
            updates={"name": "resnet-50", "version": 2, "updated_at": at(1)}
        )

    def test_a_new_description_patches_only_the_description_and_version(self) -> None:
        model = existing()
        model.update_metadata(description="fine-tuned", **WHO)
        assert patch_of(model) == RowPatch(
            updates={"description": "fine-tuned", "version": 2, "updated_at": at(1)}
        )

    def test_a_change_of_name_and_description_patches_both(self) -> None:
        model = existing()
        model.update_metadata(name="resnet-50", description="fine-tuned", **WHO)
        assert patch_of(model) == RowPatch(
            updates={
                "name": "resnet-50", "description": "fine-tuned",
                "version": 2, "updated_at": at(1),
            }
        )


class TestStatusChange:
    def test_deactivating_patches_the_status_and_turns_the_endpoint_off(self) -> None:
        model = existing()
        model.change_status(ModelStatus.INACTIVE, **WHO)
        assert patch_of(model) == RowPatch(
            updates={
                "status": "inactive", "endpoint_active": False,
                "version": 2, "updated_at": at(1),
            }
        )

    def test_reactivating_patches_the_status_and_turns_the_endpoint_back_on(self) -> None:
        model = existing()
        model.change_status(ModelStatus.INACTIVE, **WHO)
        model.collect_events()
        model.change_status(ModelStatus.ACTIVE, **WHO)
        assert patch_of(model) == RowPatch(
            updates={
                "status": "active", "endpoint_active": True,
                "version": 3, "updated_at": at(2),
            }
        )


class TestArtifact:
    def test_storing_an_artifact_patches_its_filename_size_and_digest_and_clears_any_removal(
        self,
    ) -> None:
        model = existing()
        model.store_artifact(filename="w.pt", size_bytes=2048, sha256="ab" * 32, **WHO)
        assert patch_of(model) == RowPatch(
            updates={
                "artifact_filename": "w.pt",
                "artifact_size_bytes": 2048,
                "artifact_sha256": "ab" * 32,
                "artifact_removed_at": None,
                "latest_version": 1,
                "version": 2,
                "updated_at": at(1),
            }
        )

    def test_removing_a_deleted_models_artifact_clears_it_if_still_the_latest_version(
        self,
    ) -> None:
        model = existing()
        model.store_artifact(filename="w.pt", size_bytes=2048, sha256="ab" * 32, **WHO)
        model.delete(**WHO)  # Deleted at(2), EndpointDeactivated at(3)
        model.collect_events()
        model.record_artifact_removed(**WHO)
        changes = fold_model_events(model.collect_events())
        assert changes.models[MODEL] == RowPatch(updates={"version": 5, "updated_at": at(4)})
        assert changes.removed_latest == [(MODEL, 1, at(4))]
        assert changes.versions[MODEL, 1] == RowPatch(updates={"removed_at": at(4)})


class TestDeletion:
    def test_a_deletion_marks_the_row_deleted_at_its_time_and_turns_the_endpoint_off(
        self,
    ) -> None:
        model = existing()
        model.delete(**WHO)  # Deleted at(1), EndpointDeactivated at(2)
        assert patch_of(model) == RowPatch(
            updates={
                "status": "deleted", "deleted_at": at(1), "endpoint_active": False,
                "version": 3, "updated_at": at(2),
            }
        )

    def test_deleting_an_inactive_model_leaves_its_endpoint_column_alone(self) -> None:
        model = existing()
        model.change_status(ModelStatus.INACTIVE, **WHO)
        model.collect_events()
        model.delete(**WHO)  # only Deleted: the endpoint is already off
        assert patch_of(model) == RowPatch(
            updates={"status": "deleted", "deleted_at": at(2), "version": 3, "updated_at": at(2)}
        )


class TestUpstream:
    UPSTREAM = Upstream("http://mlserver.internal:8080", "iris-v2")

    def test_an_upstream_given_at_registration_is_in_the_inserted_row(self) -> None:
        assert patch_of(registered(upstream=self.UPSTREAM)).insert == registered_row(
            upstream_url="http://mlserver.internal:8080", upstream_model="iris-v2",
            version=2, updated_at=at(1),
        )

    def test_a_changed_upstream_updates_both_columns(self) -> None:
        model = existing()
        model.set_upstream(self.UPSTREAM, **WHO)
        assert patch_of(model) == RowPatch(updates={
            "upstream_url": "http://mlserver.internal:8080", "upstream_model": "iris-v2",
            "version": 2, "updated_at": at(1),
        })

    def test_a_removed_upstream_empties_both_columns(self) -> None:
        model = existing()
        model.set_upstream(self.UPSTREAM, **WHO)
        model.collect_events()
        model.set_upstream(NO_UPSTREAM, **WHO)
        assert patch_of(model) == RowPatch(updates={
            "upstream_url": None, "upstream_model": None, "version": 3, "updated_at": at(2),
        })


class TestBatches:
    def test_a_registration_and_its_later_changes_in_one_batch_fold_into_one_insert(
        self,
    ) -> None:
        model = registered()
        model.update_metadata(name="resnet-50", **WHO)
        model.change_status(ModelStatus.INACTIVE, **WHO)
        model.store_artifact(filename="w.pt", size_bytes=2048, sha256="ab" * 32, **WHO)
        assert patch_of(model) == RowPatch(
            insert=registered_row(
                name="resnet-50",
                status="inactive",
                endpoint_active=False,
                latest_version=1,
                artifact_filename="w.pt",
                artifact_size_bytes=2048,
                artifact_sha256="ab" * 32,
                version=4,
                updated_at=at(3),
            )
        )

    def test_changes_of_one_existing_model_in_one_batch_fold_into_one_update(self) -> None:
        model = existing()
        model.update_metadata(name="resnet-50", **WHO)
        model.change_status(ModelStatus.INACTIVE, **WHO)
        assert patch_of(model) == RowPatch(
            updates={
                "name": "resnet-50", "status": "inactive", "endpoint_active": False,
                "version": 3, "updated_at": at(2),
            }
        )

    def test_the_later_of_two_renames_in_one_batch_wins(self) -> None:
        model = existing()
        model.update_metadata(name="resnet-50", **WHO)
        model.update_metadata(name="resnet-101", **WHO)
        assert patch_of(model).updates["name"] == "resnet-101"

    def test_version_and_updated_at_follow_the_last_event_of_the_batch(self) -> None:
        model = existing()
        model.update_metadata(description="fine-tuned", **WHO)
        model.change_status(ModelStatus.INACTIVE, **WHO)
        model.change_status(ModelStatus.ACTIVE, **WHO)
        model.delete(**WHO)  # Deleted at(4), EndpointDeactivated at(5): version 6
        updates = patch_of(model).updates
        assert (updates["version"], updates["updated_at"]) == (6, at(5))

    def test_a_registration_keeps_its_creation_time_when_later_events_follow_in_the_batch(
        self,
    ) -> None:
        model = registered()
        model.update_metadata(name="resnet-50", **WHO)
        insert = patch_of(model).insert
        assert insert is not None
        assert (insert["created_at"], insert["updated_at"]) == (at(0), at(1))

    def test_each_model_in_a_batch_gets_its_own_patch(self) -> None:
        old = existing(OTHER_MODEL)  # registered at(0)
        new = registered(MODEL)  # at(1)
        old.change_status(ModelStatus.INACTIVE, **WHO)  # at(2)
        new.update_metadata(name="resnet-50", **WHO)  # at(3)
        (registration, rename), (deactivation,) = new.collect_events(), old.collect_events()
        assert model_patches([registration, deactivation, rename]) == {
            MODEL: RowPatch(
                insert=registered_row(
                    name="resnet-50", version=2, created_at=at(1), updated_at=at(3)
                )
            ),
            OTHER_MODEL: RowPatch(
                updates={
                    "status": "inactive", "endpoint_active": False,
                    "version": 2, "updated_at": at(2),
                }
            ),
        }


class TestOtherEvents:
    def test_name_claim_events_are_ignored(self) -> None:
        claim = NameClaim.claim(OWNER, "resnet", MODEL)
        claim.release(MODEL)
        claim.reclaim(OTHER_MODEL)
        events = claim.collect_events()
        assert len(events) == 3
        assert model_patches(events) == {}

    def test_name_claim_events_in_a_batch_leave_the_models_patch_as_it_would_be(self) -> None:
        model = existing()
        model.update_metadata(name="resnet-50", **WHO)
        claim = NameClaim.claim(OWNER, "resnet-50", MODEL)
        batch = [*claim.collect_events(), *model.collect_events()]
        assert model_patches(batch) == {
            MODEL: RowPatch(updates={"name": "resnet-50", "version": 2, "updated_at": at(1)})
        }

    def test_usage_events_are_ignored(self) -> None:
        used = record_usage(
            model_id=MODEL, owner_id=OWNER, request_id="r-1", occurred_at=T0,
            response_time_ms=12.5, input_bytes=10, output_bytes=20, success=True, now=T0,
        )
        assert model_patches([used]) == {}

    def test_an_empty_batch_patches_nothing(self) -> None:
        assert model_patches([]) == {}
