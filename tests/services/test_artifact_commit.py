"""A registration's artifact file is discarded only when its save did not commit: a model
never names a file that is gone, and a failed registration leaves no file behind."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from domain.errors import NameTakenError
from services.models import Actor

if TYPE_CHECKING:
    from services.artifacts import Upload
    from services.container import Container

CONTENT = b"weights" * 100


def upload_of(container: Container, content: bytes = CONTENT) -> Upload:
    upload = container.artifacts.begin()
    upload.write(content)
    return upload


class ProjectorDownError(RuntimeError):
    pass


def test_a_committed_registration_keeps_its_file_when_the_catch_up_fails(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, model_id = uuid.uuid4(), uuid.uuid4()

    def catch_up(*_: Any, **__: Any) -> None:
        raise ProjectorDownError("the read-your-writes catch-up failed")

    with monkeypatch.context() as patch:
        patch.setattr(container.projector, "catch_up", catch_up)
        with pytest.raises(ProjectorDownError):
            container.models.register(
                Actor(owner, "c"), name="m", upload=upload_of(container), filename="w.bin",
                model_id=model_id,
            )
    path = container.artifacts.path_of(model_id, "w.bin")
    assert path.read_bytes() == CONTENT  # the save committed: its file stays
    container.projector.catch_up("models")  # what the worker does later
    row = container.models.get(owner, model_id)
    assert (row["artifact_filename"], row["artifact_size_bytes"], row["artifact_sha256"]) == (
        "w.bin", len(CONTENT), hashlib.sha256(CONTENT).hexdigest()
    )


def test_a_registration_whose_name_is_taken_leaves_no_file(container: Container) -> None:
    owner, model_id = uuid.uuid4(), uuid.uuid4()
    container.models.register(Actor(owner, "c"), name="taken")
    with pytest.raises(NameTakenError):
        container.models.register(
            Actor(owner, "c"), name="taken", upload=upload_of(container), filename="w.bin",
            model_id=model_id,
        )
    path = container.artifacts.path_of(model_id, "w.bin")
    assert not path.exists()
    assert not path.parent.exists()
    assert [p for p in container.artifacts.root.rglob("*") if p.is_file()] == []


def test_a_registration_whose_save_raised_leaves_no_file(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, model_id = uuid.uuid4(), uuid.uuid4()

    def save(*_: Any, **__: Any) -> None:
        raise OSError("the event store is out of reach")

    monkeypatch.setattr(container.registry_log, "save", save)
    with pytest.raises(OSError, match="out of reach"):
        container.models.register(
            Actor(owner, "c"), name="m", upload=upload_of(container), filename="w.bin",
            model_id=model_id,
        )
    assert not container.artifacts.path_of(model_id, "w.bin").exists()
