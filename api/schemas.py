"""Request and response bodies: msgspec Structs whose field names are the API contract.

Request bodies state every rule the service checks on their own fields (lengths, ranges,
formats), so that the OpenAPI document refuses exactly what the server refuses, and are
decoded strictly (``StrictBody``).
"""

from __future__ import annotations

import re
from datetime import datetime  # noqa: TC003 - needed at run time by msgspec/Litestar
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from uuid import UUID  # noqa: TC003 - needed at run time by msgspec/Litestar

import msgspec
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

from domain import api_key, upstream
from domain.model import DESCRIPTION_MAX, FRAMEWORK_MAX, NAME_MAX
from services.audit import AuditEntry  # noqa: TC001 - needed at run time by msgspec/Litestar
from services.usage import UsageRecord, UsageReport

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Reference, Schema

MAX_BATCH = 10_000
# The domain strips surrounding white space before it counts, so a name must hold a
# character that is not white space: Python's (``str.isspace``), spelled out because ``\s``
# means less in the JSON Schema dialect (not U+001C to U+001F). And no text holds NUL, which
# PostgreSQL cannot store. Anchored, so that no tool reads them as patterns of one character.
_SPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"^[{_SPACE}]*[^{_SPACE}\x00][^\x00]*$"
NO_NUL = r"^[^\x00]*$"
_WORDING = {  # the problem's words for the patterns (not the patterns)
    NOT_BLANK: "must hold a character other than white space, and no NUL character",
    NO_NUL: "must not contain the NUL character",
}

ModelStatusName = Literal["active", "inactive", "deleted"]
ModelName = Annotated[str, msgspec.Meta(max_length=NAME_MAX, pattern=NOT_BLANK,
                                        description=f"1 to {NAME_MAX} characters, not all "
                                        "white space; unique among the owner's models")]
Description = Annotated[str, msgspec.Meta(max_length=DESCRIPTION_MAX, pattern=NO_NUL,
                                          description=f"at most {DESCRIPTION_MAX} characters")]
Framework = Annotated[str, msgspec.Meta(max_length=FRAMEWORK_MAX, pattern=NOT_BLANK,
                                        description=f"1 to {FRAMEWORK_MAX} characters, not all "
                                        "white space, e.g. pytorch; onnx: the artifact must be "
                                        "a model onnxruntime loads")]
UpstreamUrl = Annotated[str, msgspec.Meta(
    max_length=upstream.URL_MAX, pattern=upstream.URL_PATTERN,
    description="The upstream V2 server's base URL: http or https, a host name or IPv4 "
    "address, an optional port and path, no user info, query or fragment. Its host must be "
    f"one the operator allows ({upstream.SETTING}; none by default): any other is a 422.",
)]
UpstreamModel = Annotated[str, msgspec.Meta(
    pattern=upstream.MODEL_PATTERN, description="The model's name on the upstream server",
)]
KeyName = Annotated[str, msgspec.Meta(max_length=api_key.NAME_MAX, pattern=NOT_BLANK,
                                      description=f"1 to {api_key.NAME_MAX} characters, not "
                                      "all white space")]


class Endpoint(msgspec.Struct):
    url: str
    active: bool


class Artifact(msgspec.Struct):
    filename: str
    size_bytes: int
    sha256: str


class Upstream(msgspec.Struct, forbid_unknown_fields=True):
    """The Open Inference Protocol server the model's endpoint forwards to."""

    url: UpstreamUrl
    model: UpstreamModel


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


VersionNumber = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Weight = Annotated[int, msgspec.Meta(ge=1, le=100, description="A whole percentage")]


class ServingShare(msgspec.Struct, forbid_unknown_fields=True):
    """A version and the share of the endpoint's requests it serves."""

    version: VersionNumber
    weight: Weight


class ServingVersion(msgspec.Struct, forbid_unknown_fields=True):
    """One version serving every request."""

    version: VersionNumber


class Model(msgspec.Struct):
    id: UUID
    name: str
    description: str
    framework: str
    status: ModelStatusName
    version: int
    endpoint: Endpoint
    artifact: Artifact | None
    upstream: Upstream | None
    request_count: int
    created_at: datetime
    updated_at: datetime
    serving: list[ServingShare]  # empty until the model has a version
    latest_version: int  # 0: no version yet


class VersionUsage(msgspec.Struct):
    version: int
    usage: UsageTotals


class ModelDetail(Model, kw_only=True):
    """A model with its all-time usage summary, also per version."""

    usage: UsageTotals
    usage_by_version: list[VersionUsage]


class ModelCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: ModelName
    description: Description = ""
    framework: Framework = "unknown"
    upstream: Upstream | None = None


class ModelUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out (or null) keep their value; but ``upstream`` null removes it."""

    name: ModelName | None = None
    description: Description | None = None
    status: Literal["active", "inactive"] | None = None
    upstream: Upstream | msgspec.UnsetType | None = msgspec.UNSET
    serving: Annotated[
        ServingVersion | list[ServingShare] | None,
        msgspec.Meta(description='One version (`{"version": 3}`) or a split whose '
                     "weights sum to 100; versions whose files exist"),
    ] = None


class ModelVersion(msgspec.Struct):
    """A stored artifact of a model."""

    number: int
    filename: str
    size_bytes: int
    sha256: str
    notes: str
    created_at: datetime
    created_by: str
    removed_at: datetime | None  # its file was removed
    serving_weight: int  # its share of the endpoint's requests now (0: none)


class ModelVersionPage(msgspec.Struct):
    items: list[ModelVersion]
    next_cursor: str | None
    serving: list[ServingShare]
    latest_version: int


class ModelPage(msgspec.Struct):
    items: list[Model]
    next_cursor: str | None
    total: int


class HistoryPage(msgspec.Struct):
    items: list[AuditEntry]
    next_cursor: str | None
    total: int


class UsageReportBatch(msgspec.Struct, forbid_unknown_fields=True):
    records: Annotated[list[UsageRecord], msgspec.Meta(
        max_length=MAX_BATCH,
        description="Each record is held to the rules of one recorded request (recordUsage's "
        "body); one that breaks them is listed in the answer's rejected, the others recorded",
    )]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: KeyName
    models: Annotated[list[UUID], msgspec.Meta(
        min_length=1, max_length=api_key.MODELS_MAX,
        description="The caller's models the key may call (none deleted); null: all of the "
        "caller's models, present and future",
    )] | None


class ApiKey(msgspec.Struct):
    """A live key, without its secret."""

    id: UUID
    name: str
    models: list[UUID] | None
    created_at: datetime
    last_used_at: datetime | None
    requests: int  # calls the endpoint metered with this key (projected: may lag a little)


class ApiKeyCreated(msgspec.Struct):
    """A new key; ``key`` is its text, shown in this answer only."""

    id: UUID
    name: str
    key: str
    models: list[UUID] | None
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyList(msgspec.Struct):
    items: list[ApiKey]


# The JSON request bodies Litestar decodes (registration reads its own, see api/uploads.py).
REQUEST_BODIES: tuple[type[msgspec.Struct], ...] = (
    ModelUpdate, UsageReport, UsageReportBatch, ApiKeyCreate,
)


class Rejection(msgspec.Struct):
    index: int
    error: str


class UsageReportBatchResult(msgspec.Struct):
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


class VersionSeries(msgspec.Struct):
    version: int
    buckets: list[UsageBucket]


class UsageSeries(msgspec.Struct):
    window: str
    tz: str
    buckets: list[UsageBucket]
    version: int | None = None  # the buckets are of this version alone (``version=``)
    # ``group_by=version``: the buckets of each version with usage in the range
    by_version: list[VersionSeries] | None = None


class VersionFigures(msgspec.Struct):
    """One version's served requests over the compared window."""

    version: int
    requests: int
    successes: int
    failures: int
    rejected: int
    success_rate: float | None
    error_rate: float | None
    avg_response_ms: float | None
    p50_response_ms: float | None
    p95_response_ms: float | None
    p99_response_ms: float | None


class VersionDifference(msgspec.Struct):
    """b minus a (None where either has no served request)."""

    success_rate: float | None
    error_rate: float | None
    p50_response_ms: float | None
    p95_response_ms: float | None
    p99_response_ms: float | None


class Verdict(msgspec.Struct):
    """Whether b is worse than a beyond the noise margin; None: too few requests to tell."""

    b_worse: bool | None
    error_rate_worse: bool | None
    p95_worse: bool | None
    error_rate_z: float | None  # the two-proportion z statistic (b's error rate above a's)
    p95_ratio: float | None  # b's p95 / a's p95
    summary: str
    method: str


class VersionComparison(msgspec.Struct):
    start: datetime
    end: datetime
    a: VersionFigures
    b: VersionFigures
    difference: VersionDifference
    verdict: Verdict


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


# Strict request bodies ----------------------------------------------------------------

T = TypeVar("T")
StructT = TypeVar("StructT", bound=msgspec.Struct)
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
# msgspec's words for a value of the right type that breaks a stated rule (a 422, like the
# domain's rules), as against a value of the wrong type or malformed JSON (a 400). A list
# longer than allowed (a batch over its maximum) is a request too big, a 400 as before.
_RULE = re.compile(r"^Expected `(str|int|float)` (of length|[<>]=?|matching regex|that is a)")
_OWN_RULE = re.compile(r"^([a-z_]+): ")  # a __post_init__'s message names its field


def decode_strictly(body: bytes, kind: type[T]) -> T:
    """``body`` as ``kind``, by msgspec's strict JSON decoder.

    A number with a zero fraction is an integer (``2.0``: JSON Schema's ``integer``, which
    strict msgspec refuses); a string is never a number, a number never a boolean or a time.
    Malformed JSON or a wrong type is a 400, a field that breaks a rule or that the schema
    lacks a 422; the problem names the field.
    """
    try:
        try:
            return msgspec.json.decode(body, type=kind)
        except msgspec.ValidationError:
            # Rare: decoded again, with the integral floats made integers (a float field
            # takes an integer in strict mode too).
            return convert_strictly(_integral(msgspec.json.decode(body)), kind)
    except msgspec.DecodeError as error:
        raise _invalid("body", f"malformed JSON: {error}", 400) from None


def convert_strictly(value: Any, kind: type[T]) -> T:
    """``value`` (decoded JSON, or a form's text fields) as ``kind``; problems as above."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as error:
        raise _problem_of(str(error)) from None


def _problem_of(message: str) -> Exception:
    at = _AT.search(message)
    path = at.group(1) if at else ""
    text = message[: at.start()] if at else message
    if (unknown := _UNKNOWN.search(text)) is not None:
        name = ".".join(filter(None, (path, unknown.group(1))))
        return _invalid(name, "is not a field of this request", 422)
    if (own := _OWN_RULE.match(text)) is not None:
        name = ".".join(filter(None, (path, own.group(1))))
        return _invalid(name, text[own.end():], 422)
    status = 422 if _RULE.match(text) else 400
    for pattern, wording in _WORDING.items():
        text = text.replace(f"Expected `str` matching regex {pattern!r}", wording)
    return _invalid(path or "body", text, status)


def _invalid(name: str, message: str, status: int) -> Exception:
    # api.errors imports this module (the problem body): imported when first needed.
    from api.errors import InvalidParameterError  # noqa: PLC0415

    return InvalidParameterError(name, message, status)


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


class StrictBody(MsgspecDTO[StructT]):
    """A JSON body decoded by msgspec in strict mode (``dto=StrictBody[Kind], return_dto=None``).

    Without it Litestar converts bodies in lax mode: ``"success": 0`` is taken as ``false``,
    ``"12"`` as a number, a number as a time, so the server accepts what its schema refuses.
    """

    def decode_bytes(self, value: bytes) -> Any:
        return decode_strictly(value, self.model_type)

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        # The body is the Struct itself, not the DTO's transfer copy of it.
        del handler_id
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(
                cls.model_type, kwarg_definition=field_definition.kwarg_definition
            )
        )
