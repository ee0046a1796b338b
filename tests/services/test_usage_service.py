"""UsageService on SQLite and PostgreSQL: who may record, rejected traffic, exactly once."""

from __future__ import annotations

import threading
import uuid

from domain.model import ModelStatus
from services.container import Container
from services.models import Actor
from tests.helpers import register, usage_records


class TestRecording:
    def test_usage_of_an_inactive_model_is_recorded_as_rejected(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        container.models.update(Actor(owner, "c"), model_id, status=ModelStatus.INACTIVE)
        container.usage.record_batch(
            usage_records(model_id, 5), caller_id=owner, may_record_any=False
        )
        container.projector.catch_up("usage")
        usage = container.models.get(owner, model_id).usage
        assert (usage.requests, usage.rejected) == (0, 5)

    def test_only_the_owner_or_a_usage_writer_may_record(self, container: Container) -> None:
        model_id = register(container, uuid.uuid4(), "resnet")
        records = usage_records(model_id, 2)
        denied = container.usage.record_batch(
            records, caller_id=uuid.uuid4(), may_record_any=False
        )
        assert denied.accepted == 0
        assert [index for index, _ in denied.rejected] == [0, 1]
        allowed = container.usage.record_batch(
            records, caller_id=uuid.uuid4(), may_record_any=True
        )
        assert allowed.accepted == 2

    def test_concurrent_recording_of_the_same_requests_counts_each_once(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        records = usage_records(model_id, 200)
        accepted: list[int] = []
        lock = threading.Lock()

        def send(offset: int) -> None:
            for start in range(0, 200, 20):
                chunk = records[(start + offset) % 200 :][:20]
                result = container.usage.record_batch(chunk, caller_id=owner, may_record_any=False)
                with lock:
                    accepted.append(result.accepted)

        threads = [threading.Thread(target=send, args=(i * 40,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(accepted) == 200
        container.projector.catch_up("usage")
        assert container.models.get(owner, model_id).usage.requests == 200
