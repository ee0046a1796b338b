"""``UsageIngest``: check, authorise and append batches of prediction-usage records.

A record is acknowledged only after the transaction holding it commits; the same request id
(per model) is stored once, and every later recording of it reports a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from domain.errors import ModelNotFoundError, ValidationError
from domain.model import ModelStatus
from domain.usage import PredictionUsage, record_usage
from projections import queries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from modelledger.usage_ledger import UsageLedger
    from projections.store import ReadStore


class UsageReport(Protocol):
    """What ingest reads of a reported request: ``UsageRecord``, or the API's own structs."""

    @property
    def model_id(self) -> UUID: ...
    @property
    def request_id(self) -> str: ...
    @property
    def response_time_ms(self) -> float: ...
    @property
    def input_bytes(self) -> int: ...
    @property
    def output_bytes(self) -> int: ...
    @property
    def success(self) -> bool: ...
    @property
    def occurred_at(self) -> datetime | None: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def ip(self) -> str | None: ...


@dataclass(frozen=True)
class UsageRecord:
    """One prediction request as reported by the inference gateway."""

    model_id: UUID
    request_id: str
    response_time_ms: float
    input_bytes: int
    output_bytes: int
    success: bool
    occurred_at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    user_agent: str | None = None
    ip: str | None = None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


class UsageIngest:
    def __init__(
        self,
        ledger: UsageLedger,
        store: ReadStore,
        on_recorded: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.on_recorded = on_recorded

    def prepare(
        self, records: Sequence[UsageReport], callers: Sequence[tuple[UUID, bool]]
    ) -> list[tuple[PredictionUsage.Recorded | None, Exception | None]]:
        """Check each record for its caller (user id, may record for any model).

        Returns ``(event, None)`` or ``(None, error)`` per record: ``ModelNotFoundError`` for
        a model that does not exist or that the caller may not see, else ``ValidationError``.
        """
        models = queries.model_lookup(self.store, [r.model_id for r in records])
        now = datetime.now(UTC)
        prepared: list[tuple[PredictionUsage.Recorded | None, Exception | None]] = []
        for record, (caller_id, may_record_any) in zip(records, callers, strict=True):
            model = models.get(record.model_id)
            if model is None or not (may_record_any or model[0] == caller_id):
                prepared.append((None, ModelNotFoundError(f"model {record.model_id} not found")))
                continue
            owner_id, status = model
            try:
                event = record_usage(
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
            except ValidationError as error:
                prepared.append((None, error))
            else:
                prepared.append((event, None))
        return prepared

    def commit(self, events: Sequence[PredictionUsage.Recorded]) -> set[UUID]:
        """Append events (first occurrence of each id only); return the ids stored now."""
        unique = list({e.originator_id: e for e in reversed(events)}.values())
        inserted = self.ledger.record(unique) if unique else set()
        if inserted and self.on_recorded is not None:
            self.on_recorded()
        return inserted

    def record_each(
        self, records: Sequence[UsageReport], callers: Sequence[tuple[UUID, bool]]
    ) -> list[bool | Exception]:
        """Check and append records in one transaction; per record: True (stored now), False
        (already recorded, or repeated earlier in ``records``) or the error that rejected it."""
        prepared = self.prepare(records, callers)
        inserted = self.commit([event for event, _ in prepared if event is not None])
        seen: set[UUID] = set()
        outcomes: list[bool | Exception] = []
        for event, error in prepared:
            if event is None:
                outcomes.append(error or AssertionError("neither event nor error"))
                continue
            outcomes.append(event.originator_id in inserted and event.originator_id not in seen)
            seen.add(event.originator_id)
        return outcomes

    def record_batch(
        self, records: Sequence[UsageReport], *, caller_id: UUID, may_record_any: bool
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
