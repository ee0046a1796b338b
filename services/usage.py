"""``UsageService``: the usage context's one way in: record prediction requests, exactly once.

A record is acknowledged only after the transaction holding it commits; the same request id
(per model) is stored once, and every later recording of it reports a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

from domain.errors import ModelNotFoundError, ValidationError
from domain.model import ModelStatus
from domain.usage import PredictionUsage, record_usage
from projections.models import queries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventstore.applications import UsageLog
    from projections.store.base import ReadStore


class UsageReport(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One prediction request as reported by the inference gateway (a request body)."""

    request_id: str
    occurred_at: datetime | None = None
    response_time_ms: float
    input_bytes: int
    output_bytes: int
    success: bool
    status_code: int | None = None
    error: str | None = None
    user_agent: str | None = None
    ip: str | None = None


class UsageRecord(UsageReport, forbid_unknown_fields=True, kw_only=True):
    """A report for a model: an item of a batch, and what the service turns into an event."""

    model_id: UUID


Caller = tuple[UUID, bool]  # (user id, may record for any model)
Outcome = bool | Exception  # True: stored now; False: a duplicate; else what rejected it


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


class UsageService:
    def __init__(
        self,
        log: UsageLog,
        store: ReadStore,
        on_recorded: Callable[[], None] | None = None,
    ) -> None:
        self.log = log
        self.store = store
        self.on_recorded = on_recorded

    def record_each(
        self, records: Sequence[UsageRecord], callers: Sequence[Caller]
    ) -> list[Outcome]:
        """Check and append records in one transaction; one outcome per record.

        A model that does not exist, or that the caller may not see, is ``ModelNotFoundError``;
        a field that breaks a rule ``ValidationError``. A request id repeated within
        ``records`` is a duplicate of its first occurrence.
        """
        models = queries.model_lookup(self.store, [r.model_id for r in records])
        now = datetime.now(UTC)
        outcomes: list[Outcome | UUID] = []
        events: dict[UUID, PredictionUsage.Recorded] = {}
        for record, (caller_id, may_record_any) in zip(records, callers, strict=True):
            model = models.get(record.model_id)
            if model is None or not (may_record_any or model[0] == caller_id):
                outcomes.append(ModelNotFoundError(f"model {record.model_id} not found"))
                continue
            try:
                event = _event_of(record, model, now)
            except ValidationError as error:
                outcomes.append(error)
                continue
            if event.originator_id in events:
                outcomes.append(False)
            else:
                events[event.originator_id] = event
                outcomes.append(event.originator_id)  # decided by the insert below
        inserted = self.log.record(list(events.values())) if events else set()
        if inserted and self.on_recorded is not None:
            self.on_recorded()
        return [o in inserted if isinstance(o, UUID) else o for o in outcomes]

    def record_batch(
        self, records: Sequence[UsageRecord], *, caller_id: UUID, may_record_any: bool
    ) -> IngestResult:
        """``record_each`` for one caller, summarised."""
        result = IngestResult()
        outcomes = self.record_each(records, [(caller_id, may_record_any)] * len(records))
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Exception):
                result.rejected.append((index, str(outcome)))
            elif outcome:
                result.accepted += 1
            else:
                result.duplicates += 1
        return result


def _event_of(
    record: UsageRecord, model: tuple[UUID, str], now: datetime
) -> PredictionUsage.Recorded:
    owner_id, status = model
    return record_usage(
        model_id=record.model_id,
        owner_id=owner_id,
        request_id=record.request_id,
        occurred_at=record.occurred_at or now,
        response_time_ms=record.response_time_ms,
        input_bytes=record.input_bytes,
        output_bytes=record.output_bytes,
        success=record.success,
        status_code=record.status_code,
        error=record.error,
        user_agent=record.user_agent,
        ip=record.ip,
        rejected=status != ModelStatus.ACTIVE.value,
        now=now,
    )
