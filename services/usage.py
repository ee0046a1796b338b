"""``UsageService``: the usage context's one way in: record prediction requests, exactly once.

A record is acknowledged only after the transaction holding it commits. A reported request id
(per model), or a metered one its client named (per model and caller), is stored once, and
every later recording of it is a duplicate; the endpoint's calls with generated request ids
ship in batches that the spool's shipment mark stores once (``ship_measured``).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import msgspec

from domain.errors import ModelNotFoundError, ValidationError
from domain.model import ModelStatus
from domain.usage import (
    ERROR_MAX,
    MAX_BYTES,
    MAX_MODEL_VERSION,
    MAX_RESPONSE_MS,
    METERED_SENDER,
    REQUEST_ID_MAX,
    USER_AGENT_MAX,
    PredictionUsage,
    record_usage,
)
from domain.usage_batch import (
    MeteredCall,
    UsageBatch,
    batch_calls,
    checked_call,
)
from eventstore.ports import Shipment
from projections.models import queries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventstore.applications import UsageLog
    from projections.store.base import ReadStore

log = logging.getLogger("modelledger.usage")


# RFC 3339 as msgspec reads it (a space may separate date and time, an offset may lack its
# colon), stated as a pattern because JSON Schema's "format" is only an annotation: every
# string it matches is a time msgspec reads, and no other (Feb 29 in leap years only).
_MONTH_DAY = (
    r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|02-(0[1-9]|1[0-9]|2[0-8]))"
)
_YEAR = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_TIME = r"[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
_OFFSET = r"([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])"


def rfc3339_pattern(
    year: str = _YEAR, leap_year: str = _LEAP_YEAR, *, offset: bool = True
) -> str:
    """The pattern of an RFC 3339 time in the years ``year`` matches (``leap_year``: those
    of them that are leap years), with an offset unless ``offset`` is false."""
    return rf"^({year}-{_MONTH_DAY}|{leap_year}-02-29){_TIME}{_OFFSET}{'' if offset else '?'}$"


_Bytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)]


class UsageReport(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One prediction request as reported by the inference gateway (the body of one).

    The field rules are the domain's (``domain.usage.check_usage``), stated here as well so
    that the API's schema names them and refuses what breaks them; a time in the future is
    refused by the domain alone.
    """

    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=REQUEST_ID_MAX)]
    occurred_at: Annotated[datetime, msgspec.Meta(
        tz=True, extra_json_schema={"pattern": rfc3339_pattern()},
        description="RFC 3339 with an offset; not in the future; default: now",
    )] | None = None
    response_time_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_RESPONSE_MS)]
    input_bytes: _Bytes
    output_bytes: _Bytes
    success: bool
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    error: Annotated[str, msgspec.Meta(max_length=ERROR_MAX)] | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=USER_AGENT_MAX)] | None = None
    ip: Annotated[str, msgspec.Meta(
        extra_json_schema={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    )] | None = None
    model_version: Annotated[int, msgspec.Meta(
        ge=1, le=MAX_MODEL_VERSION,
        description="The model version that served it (one the model has); default 1",
    )] | None = None

    def __post_init__(self) -> None:
        # msgspec has no address type: checked when decoded, like every other stated rule.
        if self.ip is not None:
            try:
                ipaddress.ip_address(self.ip)
            except ValueError:
                raise ValueError("ip: must be an IPv4 or IPv6 address") from None


class UsageRecord(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A report for a model: an item of a batch, and what the service turns into an event.

    ``UsageReport``'s fields, with their types only: a batch item that breaks a rule is
    rejected alone (listed in the batch's answer), so the rules do not refuse the batch.
    """

    model_id: UUID
    request_id: str
    occurred_at: Annotated[datetime, msgspec.Meta(
        extra_json_schema={"pattern": rfc3339_pattern(offset=False)},
    )] | None = None
    response_time_ms: float
    input_bytes: int
    output_bytes: int
    success: bool
    status_code: int | None = None
    error: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    model_version: int | None = None


class MeteredUsage(msgspec.Struct, frozen=True, array_like=True):
    """One inference call as the endpoint measured it: what the spool holds until it ships.

    The endpoint builds it, so it keeps the domain's rules already (``request_id`` at most
    ``REQUEST_ID_MAX`` characters, ``error`` and ``user_agent`` truncated to ``ERROR_MAX`` and
    ``USER_AGENT_MAX``, ``occurred_at`` in UTC); the domain checks them again when it ships.
    Array-like: a spooled record is its values only. Append fields at the end, with a default.
    """

    model_id: UUID
    owner_id: UUID
    request_id: str
    occurred_at: datetime
    response_time_ms: float
    input_bytes: int
    output_bytes: int
    success: bool
    status_code: int
    error: str | None
    user_agent: str | None
    ip: str | None
    rejected: bool  # the model was inactive, deleted or not ready: refused, still counted
    api_key_id: str  # empty when the caller used a login token
    caller: str  # the key's owner or the token's subject
    model_version: int = 1  # the version that served (appended: spooled before, version 1)
    # The service made the request id up (the client named none), so no other call has it.
    # Appended: records spooled before count as named, the safe side (an event of their own).
    generated_id: bool = False


@dataclass(frozen=True)
class Writer:
    """Who sends usage records, and whose models they may write usage for.

    Anyone may write for their own models. A service token adds what it names: owners (user
    ids), models, or every tenant. A record for a model the writer does not cover is refused
    exactly like a missing model, before any event exists, so it claims no request id.
    """

    user_id: UUID
    subject: str = ""  # as the identity provider knows the sender; recorded on each event
    issuer: str = ""
    owners: frozenset[UUID] = frozenset()
    models: frozenset[UUID] = frozenset()
    all_tenants: bool = False

    def covers(self, model_id: UUID, owner_id: UUID) -> bool:
        return (
            self.all_tenants
            or owner_id == self.user_id
            or owner_id in self.owners
            or model_id in self.models
        )


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
        self.measured_refused = 0  # metered records that broke a domain rule (a bug upstream)

    def record_each(
        self, records: Sequence[UsageRecord], writers: Sequence[Writer]
    ) -> list[Outcome]:
        """Check and append records in one transaction; one outcome per record.

        A model that does not exist, or that its writer does not cover, is
        ``ModelNotFoundError``; a field that breaks a rule ``ValidationError``. A request id
        repeated within ``records`` is a duplicate of its first occurrence.
        """
        models = queries.model_lookup(self.store, [r.model_id for r in records])
        now = datetime.now(UTC)
        outcomes: list[Outcome | UUID] = []
        events: dict[UUID, PredictionUsage.Recorded] = {}
        for record, writer in zip(records, writers, strict=True):
            model = models.get(record.model_id)
            if model is None or not writer.covers(record.model_id, model[0]):
                outcomes.append(ModelNotFoundError(f"model {record.model_id} not found"))
                continue
            try:
                event = _event_of(record, model, writer, now)
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

    def ship_measured(
        self, spool: str, rows: Sequence[tuple[int, Sequence[MeteredUsage]]]
    ) -> int:
        """Store a shipment of spool ``spool``'s rows (sequence number, records) exactly once,
        in one transaction; the number of records stored now.

        Calls with generated request ids become one ``UsageBatch.Recorded`` per model, version
        and hour; the others an event each (a client's retry meets its first recording). Rows
        the spool's mark says were stored before (shipped, then the process died before
        deleting them) are left out, so a shipment repeated after a crash stores nothing twice.
        """
        while rows:
            events, counts, refused = self._shipment_events(rows)
            inserted = self.log.record_shipment(
                events, Shipment(spool, rows[0][0], rows[-1][0])
            )
            if inserted is not None:
                for error in refused:  # once: only the shipment that stored its rows counts
                    self._refused(error)
                if inserted and self.on_recorded is not None:
                    self.on_recorded()
                return sum(counts[i] for i in inserted)
            through = self.log.shipped_through(spool)
            rows = [row for row in rows if row[0] > through]
        return 0

    def retire_spool(self, spool: str, removed_at: int | None = None) -> None:
        """Retire the shipment mark of spool ``spool``, whose file has been removed: no row of
        it stores again (another shipper may hold a copy a moment longer), and a week later
        the mark is deleted (``InsertsShipments.retire_shipments``); ``removed_at`` None:
        now by the event store's clock."""
        self.log.retire_spool(spool, removed_at)

    def _shipment_events(
        self, rows: Sequence[tuple[int, Sequence[MeteredUsage]]]
    ) -> tuple[
        list[PredictionUsage.Recorded | UsageBatch.Recorded], dict[UUID, int], list[ValidationError]
    ]:
        """The events of a shipment, how many records each stands for, and the rules that
        records broke (those are left out)."""
        now = datetime.now(UTC)
        singles: dict[UUID, PredictionUsage.Recorded] = {}
        groups: dict[tuple[UUID, UUID, int], list[MeteredCall]] = {}
        refused: list[ValidationError] = []
        for record in (record for _, records in rows for record in records):
            try:
                if record.generated_id:
                    key = (record.model_id, record.owner_id, record.model_version)
                    call = checked_call(_call_fields(record), record.model_version, now)
                    groups.setdefault(key, []).append(call)
                else:
                    event = _measured_event(record, now)
                    singles.setdefault(event.originator_id, event)
            except ValidationError as error:
                refused.append(error)
        events: list[PredictionUsage.Recorded | UsageBatch.Recorded] = list(singles.values())
        counts = dict.fromkeys(singles, 1)
        for (model_id, owner_id, version), calls in groups.items():
            for batch in batch_calls(model_id, owner_id, version, calls, now=now):
                events.append(batch)
                counts[batch.originator_id] = len(batch.calls)
        return events, counts, refused

    def _refused(self, error: ValidationError) -> None:
        self.measured_refused += 1
        # The rule it broke, not its values: those may be anything a client sent.
        log.error(
            "metered usage record refused", extra={"field": error.field, "rule": error.message}
        )

    def record_batch(self, records: Sequence[UsageRecord], writer: Writer) -> IngestResult:
        """``record_each`` for one writer, summarised."""
        result = IngestResult()
        outcomes = self.record_each(records, [writer] * len(records))
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Exception):
                result.rejected.append((index, str(outcome)))
            elif outcome:
                result.accepted += 1
            else:
                result.duplicates += 1
        return result


def _event_of(
    record: UsageRecord, model: tuple[UUID, str, int], writer: Writer, now: datetime
) -> PredictionUsage.Recorded:
    owner_id, status, latest = model
    version = 1 if record.model_version is None else record.model_version
    if record.model_version is not None and not 1 <= version <= max(latest, 1):
        raise ValidationError(
            "model_version", f"model {record.model_id} has no version {version}"
        )
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
        sender=writer.subject or str(writer.user_id),
        sender_issuer=writer.issuer,
        model_version=version,
        now=now,
    )


def _call_fields(record: MeteredUsage) -> MeteredCall:
    """The record's call (a metered record has every field of a call), not checked yet."""
    return MeteredCall._make(_FIELDS_OF_CALL(record))


_FIELDS_OF_CALL = attrgetter(*MeteredCall._fields)


def _measured_event(record: MeteredUsage, now: datetime) -> PredictionUsage.Recorded:
    return record_usage(
        model_id=record.model_id,
        owner_id=record.owner_id,
        request_id=record.request_id,
        occurred_at=record.occurred_at,
        response_time_ms=record.response_time_ms,
        input_bytes=record.input_bytes,
        output_bytes=record.output_bytes,
        success=record.success,
        status_code=record.status_code,
        error=record.error,
        user_agent=record.user_agent,
        ip=record.ip,
        rejected=record.rejected,
        sender=METERED_SENDER,
        sender_issuer="",
        api_key_id=record.api_key_id,
        caller=record.caller,
        scope_to_caller=True,
        model_version=record.model_version,
        now=now,
    )
