"""Request and response bodies: msgspec Structs whose field names are the API contract."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - needed at run time by msgspec/Litestar
from typing import Annotated, Literal
from uuid import UUID  # noqa: TC003 - needed at run time by msgspec/Litestar

import msgspec

from services.audit import AuditEntry  # noqa: TC001 - needed at run time by msgspec/Litestar
from services.usage import UsageRecord  # noqa: TC001 - needed at run time by msgspec

MAX_BATCH = 10_000

ModelStatusName = Literal["active", "inactive", "deleted"]


class Endpoint(msgspec.Struct):
    url: str
    active: bool


class Artifact(msgspec.Struct):
    filename: str
    size_bytes: int
    sha256: str


class UsageTotals(msgspec.Struct):
    """All-time usage of a model (served requests; ``rejected`` counts refused traffic)."""

    total_requests: int
    successes: int
    failures: int
    rejected: int
    success_rate: float | None
    avg_response_ms: float | None
    min_response_ms: float | None
    max_response_ms: float | None
    p50_response_ms: float | None
    p95_response_ms: float | None
    p99_response_ms: float | None
    input_bytes: int
    output_bytes: int
    last_used_at: datetime | None


class Model(msgspec.Struct):
    id: UUID
    name: str
    description: str
    framework: str
    status: ModelStatusName
    version: int
    endpoint: Endpoint
    artifact: Artifact | None
    request_count: int
    created_at: datetime
    updated_at: datetime


class ModelDetail(Model, kw_only=True):
    """A model with its all-time usage summary."""

    usage: UsageTotals


class ModelCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str = ""
    framework: str = "unknown"


class ModelUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out (or null) keep their value."""

    name: str | None = None
    description: str | None = None
    status: Literal["active", "inactive"] | None = None


class ModelPage(msgspec.Struct):
    items: list[Model]
    next_cursor: str | None
    total: int


class HistoryPage(msgspec.Struct):
    items: list[AuditEntry]
    next_cursor: str | None
    total: int


class UsageBatch(msgspec.Struct, forbid_unknown_fields=True):
    records: Annotated[list[UsageRecord], msgspec.Meta(max_length=MAX_BATCH)]


class Rejection(msgspec.Struct):
    index: int
    error: str


class UsageBatchResult(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: list[Rejection]


class UsageAck(msgspec.Struct):
    """A recorded request; ``duplicate`` when it had been recorded before (not counted twice)."""

    request_id: str
    duplicate: bool


class UsageBucket(msgspec.Struct):
    start: datetime
    end: datetime
    requests: int
    successes: int
    failures: int
    rejected: int
    success_rate: float | None
    avg_response_ms: float | None
    min_response_ms: float | None
    max_response_ms: float | None
    p50_response_ms: float | None
    p95_response_ms: float | None
    p99_response_ms: float | None
    input_bytes: int
    output_bytes: int


class UsageSeries(msgspec.Struct):
    window: str
    tz: str
    buckets: list[UsageBucket]


class ModelUsage(msgspec.Struct):
    model_id: UUID
    name: str | None
    usage: UsageTotals


class UsageSummary(msgspec.Struct):
    """The caller's usage across all models: totals, per-model breakdown and a window series."""

    window: str
    tz: str
    totals: UsageTotals
    models: list[ModelUsage]
    buckets: list[UsageBucket]


class ProjectionState(msgspec.Struct):
    name: str
    source: str
    position: int
    head: int
    lag: int


class Liveness(msgspec.Struct):
    status: str


class ProjectionHealth(msgspec.Struct):
    name: str
    position: int
    head: int
    lag: int
    idle_seconds: float | None  # since the position last moved; null if it never has
    stalled: bool


class Readiness(msgspec.Struct):
    status: Literal["ready", "stalled"]
    database: str
    projections: list[ProjectionHealth]
    stalled: list[str]  # projections with lag that have not progressed for 2 minutes


class InvalidParam(msgspec.Struct):
    name: str
    reason: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details."""

    title: str
    status: int
    type: str = "about:blank"
    detail: str | None = None
    instance: str | None = None
    invalid_params: list[InvalidParam] | None = None


class NotReady(Problem, kw_only=True):
    """``/health/ready``'s 503: a problem with the readiness details as extension members."""

    database: str
    projections: list[ProjectionHealth] = msgspec.field(default_factory=list)
    stalled: list[str] = msgspec.field(default_factory=list)
