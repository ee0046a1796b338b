"""The thinnest end-to-end slice: command -> event -> projection row, on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.container import Container
from services.models import Actor
from services.usage import UsageRecord, Writer


def test_registered_model_and_its_usage_reach_the_read_model(container: Container) -> None:
    owner = uuid.uuid4()
    row = container.models.register(Actor(owner, "c1"), name="resnet", framework="torch")
    result = container.usage.record_batch(
        [UsageRecord(model_id=row["id"], request_id="r1", response_time_ms=12.5,
                     input_bytes=10, output_bytes=20, success=True, occurred_at=datetime.now(UTC))],
        Writer(owner),
    )
    assert (result.accepted, result.duplicates) == (1, 0)
    container.projector.catch_up("usage")
    detail = container.models.get(owner, row["id"])
    assert detail["name"] == "resnet"
    assert detail.usage.requests == 1
    assert detail.usage.avg_ms == 12.5
