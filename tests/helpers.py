"""Small builders shared by the tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from domain.usage import PredictionUsage
from domain.usage_batch import UsageBatch, as_events
from projections.catalogue import PROJECTION_TABLES
from projections.store.base import ReadStore
from services.container import Container
from services.usage import UsageRecord

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)  # a Monday morning


def metric_sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample of a /metrics page (0 when it is not there yet)."""
    return next((sample.value for family in text_string_to_metric_families(exposition)
                 for sample in family.samples
                 if sample.name == name and sample.labels == labels), 0.0)


def usage_records(model_id: uuid.UUID, count: int, *, start: datetime = T0, prefix: str = "r",
                  every: timedelta = timedelta(minutes=7)) -> list[UsageRecord]:
    return [
        UsageRecord(
            model_id=model_id, request_id=f"{prefix}{i}", response_time_ms=5 + (i * 37) % 400,
            input_bytes=100 + i, output_bytes=50 + 2 * i, success=i % 9 != 0,
            occurred_at=start + i * every, status_code=200 if i % 9 else 500,
        )
        for i in range(count)
    ]


def dump(store: ReadStore, projection: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a projection's tables, sorted, for equality checks."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with store.read() as cur:
        for table in PROJECTION_TABLES[projection]:
            cur.execute(f"SELECT {', '.join(table.column_names)} FROM {table.name}")
            tables[table.name] = sorted(
                (tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                 for row in cur.fetchall()),
                key=repr,
            )
    return tables


def register(container: Container, owner: uuid.UUID, name: str) -> uuid.UUID:
    from services.models import Actor  # noqa: PLC0415

    return uuid.UUID(str(container.models.register(Actor(owner, f"c-{name}"), name=name)["id"]))


def stored_usage(container: Container) -> list[PredictionUsage.Recorded]:
    """Every recorded call in the usage log, a batch's calls as the events they stand for."""
    log = container.usage_log
    found: list[PredictionUsage.Recorded] = []
    for notification in log.recorder.select_notifications(1, 10**9):
        event = log.mapper.to_domain_event(notification)
        if isinstance(event, PredictionUsage.Recorded):
            found.append(event)
        elif isinstance(event, UsageBatch.Recorded):
            found += as_events(event)
    return found
