"""ModelService on SQLite and PostgreSQL: names unique per owner, optimistic concurrency."""

from __future__ import annotations

import threading
import uuid

import pytest

from domain.errors import NameTakenError, VersionConflictError
from services.container import Container
from services.models import Actor
from tests.helpers import register


class TestModelCommands:
    def test_names_are_unique_per_owner_among_live_models(self, container: Container) -> None:
        owner = uuid.uuid4()
        first = register(container, owner, "resnet")
        with pytest.raises(NameTakenError):
            register(container, owner, "ResNet")
        register(container, uuid.uuid4(), "resnet")  # another owner may use it
        container.models.delete(Actor(owner, "c"), first)
        register(container, owner, "resnet")  # free again once deleted

    def test_concurrent_registrations_of_one_name_let_exactly_one_win(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        outcomes: list[str] = []
        lock = threading.Lock()

        def attempt() -> None:
            try:
                register(container, owner, "contested")
                result = "ok"
            except NameTakenError:
                result = "taken"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=attempt) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["ok"] + ["taken"] * 5

    def test_a_write_based_on_a_stale_version_conflicts(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        container.models.update(Actor(owner, "c"), model_id, description="v2", expected_version=1)
        with pytest.raises(VersionConflictError):
            container.models.update(
                Actor(owner, "c"), model_id, description="v3", expected_version=1
            )
