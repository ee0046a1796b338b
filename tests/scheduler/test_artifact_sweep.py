"""The artifact sweep retries removing files of deleted models until it succeeds."""

from __future__ import annotations

import uuid

from domain.model import Model
from scheduler import run_job
from services.container import Container
from services.models import Actor


def test_a_failed_artifact_removal_is_retried_and_recorded_once(container: Container) -> None:
    owner = uuid.uuid4()
    actor = Actor(owner, "c")
    upload = container.artifacts.begin()
    upload.write(b"abc")
    row = container.models.register(actor, name="m", upload=upload, filename="model.bin")
    model_id = row["id"]
    path = container.settings.data_dir / "artifacts" / str(model_id) / "model.bin"
    path.unlink()
    path.mkdir()  # a non-empty directory where the file should be: unlink fails
    (path / "blocker").write_text("x")
    container.models.delete(actor, model_id)

    run_job(container, "sweep-artifacts")
    assert container.models.get(owner, model_id)["artifact_removed_at"] is None

    (path / "blocker").unlink()
    path.rmdir()
    path.write_bytes(b"abc")
    run_job(container, "sweep-artifacts")
    run_job(container, "sweep-artifacts")

    assert not path.exists()
    assert container.models.get(owner, model_id)["artifact_removed_at"] is not None
    removed = [e for e in container.models.get_model_events(model_id)
               if isinstance(e, Model.VersionRemoved)]
    assert [(e.number, e.filename) for e in removed] == [(1, "model.bin")]
