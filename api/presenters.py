"""Projection rows and domain values to response Structs, and the opaque keyset cursors."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from api import schemas
from api.errors import InvalidParameterError
from domain.usage_stats import UsageStats

if TYPE_CHECKING:
    from projections.queries import ModelRow
    from projections.windows import Bucket


def _summary(stats: UsageStats) -> dict[str, Any]:
    """The fields a usage total and a window bucket share."""
    p50, p95, p99 = stats.percentiles_ms(0.5, 0.95, 0.99)
    return {
        "successes": stats.successes,
        "failures": stats.failures,
        "rejected": stats.rejected,
        "success_rate": stats.success_rate,
        "avg_response_ms": stats.avg_ms,
        "min_response_ms": stats.min_ms,
        "max_response_ms": stats.max_ms,
        "p50_response_ms": p50,
        "p95_response_ms": p95,
        "p99_response_ms": p99,
        "input_bytes": stats.input_bytes,
        "output_bytes": stats.output_bytes,
    }


# Served requests are the only source of every field but ``rejected``.
_NO_REQUESTS = {k: v for k, v in _summary(UsageStats()).items() if k != "rejected"}


def totals(stats: UsageStats) -> schemas.UsageTotals:
    return schemas.UsageTotals(
        total_requests=stats.requests, last_used_at=stats.last_at, **_summary(stats)
    )


def bucket(b: Bucket) -> schemas.UsageBucket:
    if not b.stats.requests:  # most buckets of a sparse series: only ``rejected`` can vary
        return schemas.UsageBucket(
            start=b.start, end=b.end, requests=0, **_NO_REQUESTS, rejected=b.stats.rejected
        )
    return schemas.UsageBucket(
        start=b.start, end=b.end, requests=b.stats.requests, **_summary(b.stats)
    )


def _artifact(values: dict[str, Any]) -> schemas.Artifact | None:
    if values["artifact_filename"] is None or values["artifact_removed_at"] is not None:
        return None
    return schemas.Artifact(
        filename=values["artifact_filename"],
        size_bytes=values["artifact_size_bytes"],
        sha256=values["artifact_sha256"],
    )


def _model_fields(row: ModelRow) -> tuple[Any, ...]:
    """``schemas.Model``'s fields in declaration order (positional: a list page converts up to
    100 rows per request)."""
    v = row.values
    return (
        v["id"], v["name"], v["description"], v["framework"], v["status"], v["version"],
        schemas.Endpoint(v["endpoint_url"], v["endpoint_active"]), _artifact(v),
        row.usage.requests, v["created_at"], v["updated_at"],
    )


def model(row: ModelRow) -> schemas.Model:
    return schemas.Model(*_model_fields(row))


def detail(row: ModelRow) -> schemas.ModelDetail:
    return schemas.ModelDetail(*_model_fields(row), usage=totals(row.usage))


def historical(state: dict[str, Any], current: ModelRow) -> schemas.ModelDetail:
    """The model as it was at a version or moment; usage is today's all-time summary."""
    artifact = state["artifact"]
    return schemas.ModelDetail(
        id=state["id"],
        name=state["name"],
        description=state["description"],
        framework=state["framework"],
        status=state["status"],
        version=state["version"],
        endpoint=schemas.Endpoint(**state["endpoint"]),
        artifact=None if artifact is None else schemas.Artifact(**artifact),
        request_count=current.usage.requests,
        created_at=state["created_at"],
        updated_at=state["updated_at"],
        usage=totals(current.usage),
    )


# Cursors ------------------------------------------------------------------------------

def encode_cursor(*parts: Any) -> str:
    raw = msgspec.json.encode([str(p) if isinstance(p, UUID | datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidParameterError("cursor", "not a cursor this API issued") from None
    if not isinstance(parts, list):
        raise InvalidParameterError("cursor", "not a cursor this API issued")
    return parts
