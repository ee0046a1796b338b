"""``ModelService`` on SQLite and PostgreSQL: a model's upstream (only the operator's hosts,
in the audit trail and the projection) and the ONNX check of an artifact at registration."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from config.settings import Settings
from domain.errors import ValidationError
from domain.model import ModelStatus
from domain.upstream import NO_UPSTREAM, Upstream
from projections.models import queries
from services.container import Container
from services.models import Actor
from serving.onnx_check import check_loadable
from tests.conftest import make_settings
from tests.onnx_models import logistic_regression

ALLOWED = Upstream("http://mlserver.internal:8080", "iris")


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(
        backend, tmp_path, request, upstream_hosts="mlserver.internal, gateway.internal:9000"
    )


def staged(container: Container, content: bytes) -> object:
    upload = container.artifacts.begin()
    upload.write(content)
    return upload


def stored_files(container: Container) -> list[Path]:
    return [p for p in container.artifacts.root.rglob("*") if p.is_file()]


class TestUpstream:
    def test_an_upstream_given_at_registration_is_projected_and_served(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        row = container.models.register(Actor(owner, "c"), name="m", upstream=ALLOWED)
        assert (row["upstream_url"], row["upstream_model"], row["version"]) == (
            "http://mlserver.internal:8080", "iris", 2
        )
        state = queries.serving_state(container.store, row["id"])
        assert state is not None
        assert (state.upstream_url, state.upstream_model) == ("http://mlserver.internal:8080",
                                                              "iris")

    @pytest.mark.parametrize("url", [
        "http://mlserver.evil:8080", "http://127.0.0.1:8080", "http://gateway.internal:9001",
        "http://gateway.internal",
    ])
    def test_a_host_the_operator_did_not_list_is_refused_and_nothing_registered(
        self, container: Container, url: str
    ) -> None:
        owner = uuid.uuid4()
        with pytest.raises(ValidationError) as error:
            container.models.register(Actor(owner, "c"), name="m", upstream=Upstream(url, "x"))
        assert error.value.field == "upstream"
        assert "MODELLEDGER_UPSTREAM_HOSTS" in error.value.message
        assert queries.list_models(container.store, owner, limit=10) == ([], 0)

    def test_an_update_sets_changes_and_removes_the_upstream_in_the_trail(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        actor = Actor(owner, "c", subject="alice")
        model_id = container.models.register(actor, name="m")["id"]
        container.models.update(actor, model_id, upstream=ALLOWED)
        moved = Upstream("http://gateway.internal:9000/prefix", "iris-2")
        row = container.models.update(actor, model_id, upstream=moved)
        assert (row["upstream_url"], row["upstream_model"]) == (moved.url, moved.model)
        kept = container.models.update(actor, model_id, description="kept", upstream=None)
        assert kept["upstream_url"] == moved.url
        removed = container.models.update(actor, model_id, upstream=NO_UPSTREAM)
        assert (removed["upstream_url"], removed["upstream_model"]) == (None, None)
        changes = [(e.type, e.actor, e.changes)
                   for e in container.models.get_history(owner, model_id).entries
                   if e.type == "UpstreamChanged"]
        assert changes == [
            ("UpstreamChanged", "alice", {"upstream": {"url": ALLOWED.url, "model": "iris"}}),
            ("UpstreamChanged", "alice", {"upstream": {"url": moved.url, "model": "iris-2"}}),
            ("UpstreamChanged", "alice", {"upstream": None}),
        ]
        assert container.models.get_model_state(model_id, version=2)["upstream"] == {
            "url": ALLOWED.url, "model": "iris"
        }

    def test_removing_an_upstream_needs_no_listed_host(self, container: Container) -> None:
        owner = uuid.uuid4()
        actor = Actor(owner, "c")
        model_id = container.models.register(actor, name="m", upstream=ALLOWED)["id"]
        container.models.upstream_hosts = type(container.models.upstream_hosts)()  # none now
        assert container.models.update(actor, model_id, upstream=NO_UPSTREAM)[
            "upstream_url"] is None
        with pytest.raises(ValidationError):
            container.models.update(actor, model_id, upstream=ALLOWED)


class TestOnnxArtifact:
    @pytest.mark.parametrize(("framework", "filename"), [
        ("onnx", "model.bin"), ("ONNX", "weights"), ("pytorch", "model.ONNX"),
    ])
    def test_an_onnx_artifact_onnxruntime_cannot_load_is_refused_naming_file(
        self, container: Container, framework: str, filename: str, tmp_path: Path
    ) -> None:
        owner = uuid.uuid4()
        with pytest.raises(ValidationError) as error:
            container.models.register(
                Actor(owner, "c"), name="m", framework=framework,
                upload=staged(container, b"not a model"), filename=filename,  # type: ignore[arg-type]
            )
        assert error.value.field == "file"
        junk = tmp_path / "junk"
        junk.write_bytes(b"not a model")
        assert error.value.message == check_loadable(junk)  # what onnxruntime said, no path
        assert str(container.artifacts.root) not in error.value.message
        assert stored_files(container) == []  # nor the staging file
        assert queries.list_models(container.store, owner, limit=10) == ([], 0)

    def test_a_loadable_onnx_artifact_is_stored(self, container: Container) -> None:
        content = logistic_regression()
        row = container.models.register(
            Actor(uuid.uuid4(), "c"), name="m", framework="onnx",
            upload=staged(container, content), filename="lr.onnx",  # type: ignore[arg-type]
        )
        state = queries.serving_state(container.store, row["id"])
        assert state is not None
        assert (state.framework, state.serving, state.latest_version) == ("onnx", ((1, 100),), 1)
        assert (state.files[1].filename, state.files[1].size_bytes, state.files[1].removed) == (
            "lr.onnx", len(content), False)
        assert container.artifacts.path_of(row["id"], "lr.onnx").read_bytes() == content

    def test_other_artifacts_are_not_checked(self, container: Container) -> None:
        row = container.models.register(
            Actor(uuid.uuid4(), "c"), name="m", framework="pytorch",
            upload=staged(container, b"weights"), filename="w.pt",  # type: ignore[arg-type]
        )
        assert row["artifact_filename"] == "w.pt"


def test_the_serving_state_follows_status_and_artifact_removal(container: Container) -> None:
    owner = uuid.uuid4()
    actor = Actor(owner, "c")
    row = container.models.register(
        actor, name="m", framework="onnx", upload=staged(container, logistic_regression()),  # type: ignore[arg-type]
        filename="lr.onnx",
    )
    container.models.update(actor, row["id"], status=ModelStatus.INACTIVE)
    inactive = queries.serving_state(container.store, row["id"])
    assert inactive is not None
    assert (inactive.owner_id, inactive.name, inactive.status) == (owner, "m", "inactive")
    container.models.delete(actor, row["id"])
    container.projector.catch_up("models")  # the removal is recorded after delete answers
    deleted = queries.serving_state(container.store, row["id"])
    assert deleted is not None
    assert (deleted.status, deleted.files[1].removed) == ("deleted", True)
    assert queries.serving_state(container.store, uuid.uuid4()) is None
