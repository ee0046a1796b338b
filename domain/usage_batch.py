"""``UsageBatch``: the endpoint's own records of many calls to one model version in one hour.

A call whose request id the service generated (the client sent none) cannot be a retry of
another, so it needs no aggregate of its own to be counted once: the shipper stores the calls
of one shipment, grouped by model, version and hour, as one ``UsageBatch.Recorded`` each, and
the event store's shipment mark (``InsertsShipments``) keeps a shipment from being stored twice.
A call whose client named its request id stays a ``PredictionUsage.Recorded`` of its own, so a
retry of it meets the store's uniqueness constraint.

One group per event, never more, so that compaction and the projections treat a batch like a
raw event of its model-version-hour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from domain.errors import ValidationError
from domain.usage import (
    MAX_MODEL_VERSION,
    METERED_SENDER,
    USAGE_TOPIC,
    PredictionUsage,
    check_usage,
    hour_of,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


class MeteredCall(NamedTuple):
    """One call as the endpoint measured it (``PredictionUsage.Recorded``'s per-call fields;
    its model, owner, version and sender are the batch's)."""

    request_id: str
    occurred_at: datetime
    response_time_ms: float
    input_bytes: int
    output_bytes: int
    success: bool
    status_code: int | None
    error: str | None
    user_agent: str | None
    ip: str | None
    rejected: bool
    api_key_id: str
    caller: str


class UsageBatch(Aggregate):
    """Calls of one model version in one hour, recorded together."""

    class Recorded(Aggregate.Created):
        model_id: UUID
        owner_id: UUID
        model_version: int
        hour: int  # whole hours since the Unix epoch (UTC) of every call's ``occurred_at``
        calls: tuple[MeteredCall, ...]


_TOPIC = get_topic(UsageBatch)


def batch_calls(
    model_id: UUID,
    owner_id: UUID,
    model_version: int,
    calls: Sequence[MeteredCall],
    *,
    now: datetime | None = None,
) -> list[UsageBatch.Recorded]:
    """The ``Recorded`` events of ``calls`` (already checked): one per hour they occurred in."""
    by_hour: dict[int, list[MeteredCall]] = {}
    for call in calls:
        by_hour.setdefault(hour_of(call.occurred_at), []).append(call)
    timestamp = now or datetime.now(UTC)
    # eventsourcing makes event classes dataclasses at run time; mypy sees only the base init.
    return [
        UsageBatch.Recorded(  # type: ignore[call-arg]
            originator_id=uuid4(),
            originator_version=1,
            timestamp=timestamp,
            originator_topic=_TOPIC,
            model_id=model_id,
            owner_id=owner_id,
            model_version=model_version,
            hour=hour,
            calls=tuple(hour_calls),
        )
        for hour, hour_calls in sorted(by_hour.items())
    ]


def checked_call(call: MeteredCall, model_version: int, now: datetime) -> MeteredCall:
    """The call as a batch holds it (``occurred_at`` in UTC, as on a usage event); raise
    ``ValidationError`` naming the first field that breaks a rule (``check_usage``)."""
    check_usage(
        request_id=call.request_id,
        occurred_at=call.occurred_at,
        response_time_ms=call.response_time_ms,
        input_bytes=call.input_bytes,
        output_bytes=call.output_bytes,
        status_code=call.status_code,
        error=call.error,
        user_agent=call.user_agent,
        ip=call.ip,
        now=now,
    )
    if not 1 <= model_version <= MAX_MODEL_VERSION:
        raise ValidationError("model_version", f"must be 1 to {MAX_MODEL_VERSION}")
    return call._replace(occurred_at=call.occurred_at.astimezone(UTC))


def call_id(batch: UsageBatch.Recorded, index: int) -> UUID:
    """The id of the batch's ``index``-th call (the archive names each call by it): unique,
    since the batch is stored once, and never the ``usage_id`` a request id gives, because a
    generated request id a client later sends back is a request id of its own (counted once
    among its own retries), not a retry of the call the service generated it for."""
    return uuid5(batch.originator_id, str(index))


def as_events(batch: UsageBatch.Recorded) -> list[PredictionUsage.Recorded]:
    """Each call as a ``PredictionUsage.Recorded`` of its own (named by ``call_id``, recorded
    when the batch was): how the archive and the tests read a batch's calls."""
    # eventsourcing makes event classes dataclasses at run time; mypy sees only the base init.
    return [
        PredictionUsage.Recorded(  # type: ignore[call-arg]
            originator_id=call_id(batch, index),
            originator_version=1,
            timestamp=batch.timestamp,
            originator_topic=USAGE_TOPIC,
            model_id=batch.model_id,
            owner_id=batch.owner_id,
            request_id=call.request_id,
            occurred_at=call.occurred_at,
            response_time_ms=call.response_time_ms,
            input_bytes=call.input_bytes,
            output_bytes=call.output_bytes,
            success=call.success,
            status_code=call.status_code,
            error=call.error,
            user_agent=call.user_agent,
            ip=call.ip,
            rejected=call.rejected,
            sender=METERED_SENDER,
            sender_issuer="",
            api_key_id=call.api_key_id,
            caller=call.caller,
            model_version=batch.model_version,
        )
        for index, call in enumerate(batch.calls)
    ]
