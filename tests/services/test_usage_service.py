"""UsageService on SQLite and PostgreSQL: who may record, rejected traffic, exactly once."""

from __future__ import annotations

import threading
import uuid
from typing import cast

from domain.model import ModelStatus
from domain.usage import PredictionUsage, usage_id
from services.container import Container
from services.models import Actor
from services.usage import Writer
from tests.helpers import register, usage_records


class TestRecording:
    def test_usage_of_an_inactive_model_is_recorded_as_rejected(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        container.models.update(Actor(owner, "c"), model_id, status=ModelStatus.INACTIVE)
        container.usage.record_batch(usage_records(model_id, 5), Writer(owner))
        container.projector.catch_up("usage")
        usage = container.models.get(owner, model_id).usage
        assert (usage.requests, usage.rejected) == (0, 5)

    def test_only_the_owner_or_a_writer_covering_the_model_may_record(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        other = register(container, uuid.uuid4(), "other")
        records = usage_records(model_id, 2)
        for stranger in (Writer(uuid.uuid4()), Writer(uuid.uuid4(), owners=frozenset({other})),
                         Writer(uuid.uuid4(), models=frozenset({other}))):
            denied = container.usage.record_batch(records, stranger)
            assert denied.accepted == 0
            assert [index for index, _ in denied.rejected] == [0, 1]
            assert all("not found" in error for _, error in denied.rejected)
        by_owner = container.usage.record_batch(records[:1], Writer(uuid.uuid4(),
                                                                     owners=frozenset({owner})))
        by_model = container.usage.record_batch(records[1:], Writer(uuid.uuid4(),
                                                                     models=frozenset({model_id})))
        anyone = container.usage.record_batch(usage_records(model_id, 3, prefix="a"),
                                              Writer(uuid.uuid4(), all_tenants=True))
        assert (by_owner.accepted, by_model.accepted, anyone.accepted) == (1, 1, 3)

    def test_a_refused_record_leaves_its_request_id_free(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        records = usage_records(model_id, 3)
        assert container.usage.record_batch(records, Writer(uuid.uuid4())).accepted == 0
        assert container.usage.record_batch(records, Writer(owner)).accepted == 3

    def test_each_event_records_the_sender(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        [first, second] = usage_records(model_id, 2)
        container.usage.record_batch([first], Writer(uuid.uuid4(), "gateway", "https://idp",
                                                     all_tenants=True))
        container.usage.record_batch([second], Writer(owner))  # in-process: no subject
        senders = [
            (e.sender, e.sender_issuer)
            for r in (first, second)
            for e in cast("list[PredictionUsage.Recorded]", list(
                container.usage_log.events.get(usage_id(model_id, r.request_id))))
        ]
        assert senders == [("gateway", "https://idp"), (str(owner), "")]

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
                result = container.usage.record_batch(chunk, Writer(owner))
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
