"""Helpers of the scheduler tests: old usage (raw events and batches of calls), and the usage
tables as comparable values."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import msgspec

from domain.usage import PredictionUsage, hour_of, record_usage
from domain.usage_batch import MeteredCall, UsageBatch, batch_calls
from projections.catalogue import PROJECTION_TABLES
from services.models import Actor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from services.container import Container

NOW = datetime.now(UTC).replace(microsecond=0)
Models = list[tuple[uuid.UUID, uuid.UUID]]  # (model id, owner id)


def register_models(
    container: Container, count: int, owners: int = 2
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``count`` models spread over ``owners`` owners: [(model id, owner id)]."""
    owner_ids = [uuid.uuid4() for _ in range(owners)]
    models = []
    for i in range(count):
        owner = owner_ids[i % owners]
        row = container.models.register(Actor(owner, f"c{i}"), name=f"m{i}", framework="torch")
        models.append((row["id"], owner))
    return models


def usage(
    model: tuple[uuid.UUID, uuid.UUID],
    request_id: str,
    occurred_at: datetime,
    rng: random.Random,
    *,
    recorded_at: datetime | None = None,
) -> PredictionUsage.Recorded:
    """A usage event recorded at ``recorded_at`` (default: shortly after it occurred)."""
    return record_usage(
        model_id=model[0],
        owner_id=model[1],
        request_id=request_id,
        occurred_at=occurred_at,
        response_time_ms=rng.choice([0.0, 0.5, 3.25, rng.uniform(1, 900)]),
        input_bytes=rng.randint(0, 10_000),
        output_bytes=rng.randint(0, 10_000),
        success=rng.random() < 0.9,
        status_code=200,
        rejected=rng.random() < 0.05,
        now=recorded_at or occurred_at + timedelta(seconds=rng.randint(0, 120)),
    )


def old_usage(
    models: list[tuple[uuid.UUID, uuid.UUID]],
    count: int,
    *,
    days_ago: tuple[int, int],
    seed: int = 1,
    prefix: str = "r",
) -> list[PredictionUsage.Recorded]:
    """``count`` usage events spread between ``days_ago`` (older, newer) days before NOW."""
    rng = random.Random(seed)
    span = (days_ago[0] - days_ago[1]) * 86_400
    return [
        usage(
            rng.choice(models),
            f"{prefix}{i}",
            NOW - timedelta(days=days_ago[0]) + timedelta(seconds=rng.randint(0, span)),
            rng,
        )
        for i in range(count)
    ]


def metered_calls(
    count: int,
    hour_start: datetime,
    rng: random.Random,
    *,
    prefix: str = "g",
    keys: tuple[str, ...] = ("",),
) -> list[MeteredCall]:
    """``count`` calls with generated request ids in the hour from ``hour_start``, called in
    turn with each of ``keys`` (empty: a login token)."""
    return [
        MeteredCall(
            request_id=f"{prefix}{i}",
            occurred_at=hour_start + timedelta(seconds=rng.randint(0, 3_599)),
            response_time_ms=rng.choice([0.0, 0.5, 3.25, rng.uniform(1, 900)]),
            input_bytes=rng.randint(0, 10_000),
            output_bytes=rng.randint(0, 10_000),
            success=rng.random() < 0.9,
            status_code=200,
            error=None,
            user_agent="bench/1",
            ip="10.0.0.7",
            rejected=rng.random() < 0.05,
            api_key_id=keys[i % len(keys)],
            caller=f"caller{i % 3}",
        )
        for i in range(count)
    ]


def batch(
    model: tuple[uuid.UUID, uuid.UUID],
    calls: list[MeteredCall],
    *,
    model_version: int = 1,
    recorded_at: datetime | None = None,
) -> UsageBatch.Recorded:
    """The batch of ``calls`` (all of one hour), recorded at ``recorded_at`` (default: just
    after that hour)."""
    hour = hour_of(calls[0].occurred_at)
    recorded_at = recorded_at or datetime.fromtimestamp((hour + 1) * 3600 + 5, UTC)
    (made,) = batch_calls(model[0], model[1], model_version, calls, now=recorded_at)
    return made


def old_batches(
    models: list[tuple[uuid.UUID, uuid.UUID]],
    count: int,
    *,
    calls: int,
    days_ago: tuple[int, int],
    seed: int = 1,
    prefix: str = "b",
) -> list[UsageBatch.Recorded]:
    """``count`` batches of ``calls`` calls each, in hours between ``days_ago`` (older,
    newer) days before NOW."""
    rng = random.Random(seed)
    span = (days_ago[0] - days_ago[1]) * 24
    start = (NOW - timedelta(days=days_ago[0])).replace(minute=0, second=0)
    hours = [start + timedelta(hours=rng.randint(0, span - 1)) for _ in range(count)]
    return [
        batch(rng.choice(models), metered_calls(calls, hour, rng, prefix=f"{prefix}{i}-"))
        for i, hour in enumerate(hours)
    ]


def store(
    container: Container, events: Sequence[PredictionUsage.Recorded | UsageBatch.Recorded]
) -> set[uuid.UUID]:
    """Append raw events and batches in this order (``UsageLog.record`` maps any event class;
    its hint names the usage event only)."""
    return container.usage_log.record(cast("list[PredictionUsage.Recorded]", list(events)))


def usage_tables(container: Container) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the usage projection's tables (histograms decoded: byte order may differ)."""
    store = container.store
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with store.read() as cur:
        for table in PROJECTION_TABLES["usage"]:
            names = table.column_names
            cur.execute(f"SELECT {', '.join(names)} FROM {table.name}")
            rows = []
            for row in cur.fetchall():
                values = list(row)
                if "histogram" in names:  # api_key_usage has none
                    index = names.index("histogram")
                    values[index] = msgspec.msgpack.decode(bytes(values[index]))
                rows.append(tuple(str(v) if not isinstance(v, (int, dict)) else v for v in values))
            tables[table.name] = sorted(rows, key=repr)
    return tables
