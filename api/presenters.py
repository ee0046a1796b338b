"""Projection rows and domain values to response Structs, and the opaque keyset cursors."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from msgspec.structs import astuple

from api import schemas
from api.errors import InvalidParameterError
from domain.model import NAME_MAX
from projections.models.queries import MODEL_INDEX, serving_split
from projections.usage.figures import NOTHING_SHOWN, SHOWN

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from projections.models.queries import KeyView, ModelRow, VersionView
    from projections.usage.figures import UsageFigures
    from projections.usage.windows import Bucket, Span


def totals(f: UsageFigures) -> schemas.UsageTotals:
    return schemas.UsageTotals(*astuple(f)[:_TOTALS])


def bucket(b: Bucket) -> schemas.UsageBucket:
    return schemas.UsageBucket(b.start, b.end, *astuple(b.figures)[:SHOWN])


def series(
    spans: Sequence[Span], shown: Mapping[int, tuple[Any, ...]]
) -> list[schemas.UsageBucket]:
    """A bucket per span, from the shown figures of the spans with usage (by index)."""
    return [
        schemas.UsageBucket(span.start, span.end, *shown.get(index, NOTHING_SHOWN))
        for index, span in enumerate(spans)
    ]


# ``UsageFigures`` lists its ``SHOWN`` fields first, in the order of these bodies (a test holds
# them to it): a 90-day series presents 91 buckets, positionally.
_TOTALS = len(schemas.UsageTotals.__struct_fields__)


_ID, _NAME, _DESCRIPTION, _FRAMEWORK, _STATUS, _VERSION, _URL, _ACTIVE, _FILE, _SIZE, \
    _SHA256, _REMOVED, _CREATED, _UPDATED, _UPSTREAM_URL, _UPSTREAM_MODEL, _SERVING, \
    _LATEST = (
        MODEL_INDEX[name] for name in (
            "id", "name", "description", "framework", "status", "version", "endpoint_url",
            "endpoint_active", "artifact_filename", "artifact_size_bytes", "artifact_sha256",
            "artifact_removed_at", "created_at", "updated_at", "upstream_url", "upstream_model",
            "serving", "latest_version",
        )
    )
_HEAD = itemgetter(_ID, _NAME, _DESCRIPTION, _FRAMEWORK, _STATUS, _VERSION)


def _artifact(v: Sequence[Any]) -> schemas.Artifact | None:
    if v[_FILE] is None or v[_REMOVED] is not None:
        return None
    return schemas.Artifact(filename=v[_FILE], size_bytes=v[_SIZE], sha256=v[_SHA256])


def _upstream(v: Sequence[Any]) -> schemas.Upstream | None:
    url = v[_UPSTREAM_URL]
    return None if url is None else schemas.Upstream(url=url, model=v[_UPSTREAM_MODEL])


def _model_fields(row: ModelRow) -> tuple[Any, ...]:
    """``schemas.Model``'s fields in declaration order (positional: a list page converts up to
    100 rows per request)."""
    v = row.values
    return (
        *_HEAD(v), schemas.Endpoint(v[_URL], v[_ACTIVE]), _artifact(v), _upstream(v),
        row.usage.requests, v[_CREATED], v[_UPDATED],
        shares(serving_split(v[_SERVING], v[_LATEST])), v[_LATEST],
    )


def shares(split: Sequence[Sequence[int]]) -> list[schemas.ServingShare]:
    return [schemas.ServingShare(version, weight) for version, weight in split]


def model(row: ModelRow) -> schemas.Model:
    return schemas.Model(*_model_fields(row))


def detail(
    row: ModelRow, by_version: Sequence[tuple[int, UsageFigures]] = ()
) -> schemas.ModelDetail:
    return schemas.ModelDetail(
        *_model_fields(row), usage=totals(row.usage),
        usage_by_version=[schemas.VersionUsage(n, totals(f)) for n, f in by_version],
    )


def model_version(view: VersionView, split: Sequence[Sequence[int]]) -> schemas.ModelVersion:
    weight = next((w for n, w in split if n == view.number), 0)
    return schemas.ModelVersion(
        number=view.number, filename=view.filename, size_bytes=view.size_bytes,
        sha256=view.sha256, notes=view.notes, created_at=view.created_at,
        created_by=view.created_by, removed_at=view.removed_at, serving_weight=weight,
    )


def serving_of(row: ModelRow) -> tuple[tuple[int, int], ...]:
    return serving_split(row["serving"], row["latest_version"])


def historical(state: dict[str, Any], current: ModelRow) -> schemas.ModelDetail:
    """The model as it was at a version or moment; usage is today's all-time summary."""
    artifact, upstream = state["artifact"], state["upstream"]
    return schemas.ModelDetail(
        id=state["id"],
        name=state["name"],
        description=state["description"],
        framework=state["framework"],
        status=state["status"],
        version=state["version"],
        endpoint=schemas.Endpoint(**state["endpoint"]),
        artifact=None if artifact is None else schemas.Artifact(**artifact),
        upstream=None if upstream is None else schemas.Upstream(**upstream),
        request_count=current.usage.requests,
        created_at=state["created_at"],
        updated_at=state["updated_at"],
        serving=shares(state["serving"]),
        latest_version=state["latest_version"],
        usage=totals(current.usage),
        usage_by_version=[],
    )


def key(view: KeyView) -> schemas.ApiKey:
    return schemas.ApiKey(
        id=view.id, name=view.name, models=view.models, created_at=view.created_at,
        last_used_at=view.last_used_at, requests=view.requests,
    )


def key_created(view: KeyView, text: str) -> schemas.ApiKeyCreated:
    return schemas.ApiKeyCreated(
        id=view.id, name=view.name, key=text, models=view.models, created_at=view.created_at,
        last_used_at=view.last_used_at,
    )


# Cursors ------------------------------------------------------------------------------
# A cursor is base64url JSON that the client can rewrite at will: every part is checked
# for the type and range the server issues before it reaches SQL, where a wrong type is a
# 500 (and, in a batched PostgreSQL statement, would fail every request sharing it).
# Cursors carry no authority (the owner filter is applied whatever they say), so they are
# validated rather than signed: a signature would add nothing but key rotation breaking them.

_MAX_VERSION = 2**63 - 1  # versions are PostgreSQL bigints


def encode_cursor(*parts: Any) -> str:
    raw = msgspec.json.encode([str(p) if isinstance(p, UUID | datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise _not_issued() from None
    if not isinstance(parts, list):
        raise _not_issued()
    return parts


def list_cursor(cursor: str, sort: str) -> tuple[str | datetime, UUID]:
    """The keyset position (sort value, model id) of a list cursor issued for ``sort``."""
    parts = decode_cursor(cursor)
    if len(parts) != 3 or parts[0] != sort:  # noqa: PLR2004 - sort, value, id
        raise InvalidParameterError("cursor", "belongs to another listing or sort order")
    name_sort = sort.removeprefix("-") == "name"
    return (_name(parts[1]) if name_sort else _time(parts[1])), _uuid(parts[2])


def history_cursor(cursor: str, listing: str = "history") -> int:
    """The last (event or model) version shown, from a cursor of ``listing``."""
    parts = decode_cursor(cursor)
    if len(parts) != 2 or parts[0] != listing:  # noqa: PLR2004 - listing, version
        raise InvalidParameterError("cursor", "belongs to another listing")
    version = parts[1]
    if type(version) is not int or not 1 <= version <= _MAX_VERSION:  # bool is no version
        raise _not_issued()
    return version


def _name(value: Any) -> str:
    # PostgreSQL refuses NUL in text; no stored name is longer than the domain allows.
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX or "\x00" in value:
        raise _not_issued()
    return value


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _not_issued()
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise _not_issued()
        return moment.astimezone(UTC)  # OverflowError past year 1 or 9999 in UTC
    except (ValueError, OverflowError):
        raise _not_issued() from None


def _uuid(value: Any) -> UUID:
    if not isinstance(value, str):
        raise _not_issued()
    try:
        parsed = UUID(value)
    except ValueError:
        raise _not_issued() from None
    if str(parsed) != value:  # the server writes the canonical spelling only
        raise _not_issued()
    return parsed


def _not_issued() -> InvalidParameterError:
    return InvalidParameterError("cursor", "not a cursor this API issued")
