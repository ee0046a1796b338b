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

if TYPE_CHECKING:
    from domain.usage_stats import UsageStats
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


def totals(stats: UsageStats) -> schemas.UsageTotals:
    return schemas.UsageTotals(
        total_requests=stats.requests, last_used_at=stats.last_at, **_summary(stats)
    )


def bucket(b: Bucket) -> schemas.UsageBucket:
    return schemas.UsageBucket(
        start=b.start, end=b.end, requests=b.stats.requests, **_summary(b.stats)
    )


def _artifact(row: ModelRow) -> schemas.Artifact | None:
    if row["artifact_filename"] is None or row["artifact_removed_at"] is not None:
        return None
    return schemas.Artifact(
        filename=row["artifact_filename"],
        size_bytes=row["artifact_size_bytes"],
        sha256=row["artifact_sha256"],
    )


def _model_fields(row: ModelRow) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "framework": row["framework"],
        "status": row["status"],
        "version": row["version"],
        "endpoint": schemas.Endpoint(url=row["endpoint_url"], active=row["endpoint_active"]),
        "artifact": _artifact(row),
        "request_count": row.usage.requests,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def model(row: ModelRow) -> schemas.Model:
    return schemas.Model(**_model_fields(row))


def detail(row: ModelRow) -> schemas.ModelDetail:
    return schemas.ModelDetail(**_model_fields(row), usage=totals(row.usage))


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
