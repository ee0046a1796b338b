"""The Model aggregate's rules, without any I/O."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import (
    InvalidStatusTransitionError,
    ModelDeletedError,
    NameTakenError,
    ValidationError,
    VersionConflictError,
)
from domain.model import DESCRIPTION_MAX, NAME_MAX, Model, ModelStatus
from domain.name_claim import NameClaim, name_claim_id

WHO = {"actor": "user-1", "correlation_id": "req-1"}


def new_model(**overrides: object) -> Model:
    values: dict[str, object] = {
        "model_id": uuid.uuid4(), "owner_id": uuid.uuid4(), "name": "resnet",
        "description": "", "framework": "torch", "endpoint_url": "/predict/x", **WHO,
    }
    values.update(overrides)
    return Model.register(**values)  # type: ignore[arg-type]


class TestRegistration:
    def test_new_model_is_active_with_an_active_endpoint(self) -> None:
        model = new_model()
        assert model.status is ModelStatus.ACTIVE
        assert model.endpoint_active
        assert model.version == 1

    def test_name_is_stripped(self) -> None:
        assert new_model(name="  resnet  ").name == "resnet"

    @pytest.mark.parametrize("name", ["", "   ", "x" * (NAME_MAX + 1)])
    def test_name_must_be_1_to_200_characters(self, name: str) -> None:
        with pytest.raises(ValidationError) as error:
            new_model(name=name)
        assert error.value.field == "name"

    def test_description_is_at_most_5000_characters(self) -> None:
        new_model(description="d" * DESCRIPTION_MAX)
        with pytest.raises(ValidationError, match="description"):
            new_model(description="d" * (DESCRIPTION_MAX + 1))

    def test_registration_event_records_who_and_why(self) -> None:
        (registered,) = new_model().collect_events()
        assert isinstance(registered, Model.Registered)
        assert (registered.actor, registered.correlation_id) == ("user-1", "req-1")


class TestUpdates:
    def test_metadata_update_records_old_and_new_values(self) -> None:
        model = new_model()
        model.collect_events()
        model.update_metadata(name="resnet-50", description="v2", **WHO)
        (updated,) = model.collect_events()
        assert isinstance(updated, Model.MetadataUpdated)
        assert updated.changes == {"name": ("resnet", "resnet-50"), "description": ("", "v2")}

    def test_update_to_the_same_values_records_nothing(self) -> None:
        model = new_model()
        model.collect_events()
        assert model.update_metadata(name="resnet", **WHO) == {}
        assert model.collect_events() == []

    def test_deactivating_a_model_deactivates_its_endpoint(self) -> None:
        model = new_model()
        model.change_status(ModelStatus.INACTIVE, **WHO)
        assert not model.endpoint_active
        model.change_status(ModelStatus.ACTIVE, **WHO)
        assert model.endpoint_active

    def test_status_deleted_is_not_a_status_change(self) -> None:
        with pytest.raises(InvalidStatusTransitionError):
            new_model().change_status(ModelStatus.DELETED, **WHO)

    def test_stale_version_is_a_conflict(self) -> None:
        model = new_model()
        model.update_metadata(name="b", **WHO)
        with pytest.raises(VersionConflictError) as error:
            model.check_version(1)
        assert (error.value.expected, error.value.actual) == (1, 2)


class TestDeletion:
    def test_delete_deactivates_the_endpoint(self) -> None:
        model = new_model()
        model.collect_events()
        assert model.delete(**WHO)
        assert [type(e) for e in model.collect_events()] == [
            Model.Deleted,
            Model.EndpointDeactivated,
        ]
        assert model.status is ModelStatus.DELETED

    def test_deleting_twice_is_harmless(self) -> None:
        model = new_model()
        model.delete(**WHO)
        model.collect_events()
        assert not model.delete(**WHO)
        assert model.collect_events() == []

    def test_deleted_model_cannot_be_renamed(self) -> None:
        model = new_model()
        model.delete(**WHO)
        with pytest.raises(ModelDeletedError):
            model.update_metadata(name="other", **WHO)

    def test_deleted_model_cannot_be_reactivated(self) -> None:
        model = new_model()
        model.delete(**WHO)
        with pytest.raises(ModelDeletedError):
            model.change_status(ModelStatus.ACTIVE, **WHO)

    def test_artifact_removal_is_recorded_once(self) -> None:
        model = new_model()
        model.store_artifact(filename="m.bin", size_bytes=3, sha256="ab", **WHO)
        model.delete(**WHO)
        assert model.artifact_pending_removal
        model.record_artifact_removed(**WHO)
        model.record_artifact_removed(**WHO)
        removed = [e for e in model.collect_events() if isinstance(e, Model.ArtifactRemoved)]
        assert len(removed) == 1
        assert not model.artifact_pending_removal


class TestNameClaims:
    def test_names_compare_case_insensitively_per_owner(self) -> None:
        owner = uuid.uuid4()
        assert name_claim_id(owner, "ResNet") == name_claim_id(owner, "resnet")
        assert name_claim_id(owner, "resnet") != name_claim_id(uuid.uuid4(), "resnet")

    def test_a_held_name_cannot_be_claimed_by_another_model(self) -> None:
        claim = NameClaim.claim(uuid.uuid4(), "resnet", uuid.uuid4())
        with pytest.raises(NameTakenError):
            claim.reclaim(uuid.uuid4())

    def test_a_released_name_can_be_claimed_again(self) -> None:
        first, second = uuid.uuid4(), uuid.uuid4()
        claim = NameClaim.claim(uuid.uuid4(), "resnet", first)
        claim.release(first)
        claim.reclaim(second)
        assert claim.holder == second
