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
    from projections.figures import UsageFigures
    from projections.queries import ModelRow
    from projections.windows import Bucket


_Summary = tuple[
    int, int, int, float | None, float | None, float | None, float | None,
    float | None, float | None, float | None, int, int,
]


def _summary(f: UsageFigures) -> _Summary:
    """The fields a usage total and a window bucket share, in their declaration order from
    ``successes`` to ``output_bytes`` (positional: a 90-day series builds 91 buckets).
    """
    if not f.requests:  # most buckets of a sparse series; served requests are the only
        # source of every field but ``rejected``
        return (0, 0, f.rejected, None, None, None, None, None, None, None, 0, 0)
    return (
        f.successes, f.failures, f.rejected, f.success_rate, f.avg_ms, f.min_ms, f.max_ms,
        *f.percentiles_ms, f.input_bytes, f.output_bytes,
    )


def totals(f: UsageFigures) -> schemas.UsageTotals:
    return schemas.UsageTotals(f.requests, *_summary(f), f.last_at)


def bucket(b: Bucket) -> schemas.UsageBucket:
    return schemas.UsageBucket(b.start, b.end, b.figures.requests, *_summary(b.figures))


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
