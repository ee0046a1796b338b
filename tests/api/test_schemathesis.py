"""The whole API fuzzed against its own OpenAPI document by schemathesis (SQLite only).

Every check runs: no 5xx; status codes, content types, headers and bodies as documented;
every request the schema allows is accepted and every one it forbids refused; then the
stateful phase follows the document's links from ``POST /api/models`` through the per-model
routes. At least 100 generated requests per operation (the health probes and the metrics
take no input: one request is all there is), with a token holding every scope and, for the
scoped operations, with a token holding that scope alone. The app is built at import
because schemathesis parametrizes from a loaded schema; SQLite only, to keep the run short.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import msgspec
import pytest
import schemathesis
from hypothesis import settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation

from api import presenters
from api.app import create_app
from api.openapi import complete_openapi
from api.tokens import user_id_of
from config.settings import load_settings
from domain.upstream import URL_MAX
from modelledger.bootstrap import build
from services.models import Actor
from tests.api.conftest import SECRET, bearer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from schemathesis import BaseSchema

SUBJECT = "schemathesis"
EVERY_SCOPE = ("models", "usage:write", "admin")

# The configuration of the run, as schemathesis.toml would hold it.
CONFIG = schemathesis.Config.from_str("""
[generation]
max-examples = 100
# The same cases on every run: a failure in the test command is one anybody can reproduce
# (vary the seed by hand to explore).
deterministic = true
database = "none"

[checks]
# A deleted model stays readable (GET answers it with status "deleted", its history keeps
# the deletion): the audit trail outlives the model by design, which this check calls a
# use after free.
use_after_free.enabled = false
# If-Match (updateModel's only) with a well-formed ETag that is no longer current is a 412
# by RFC 9110, like the 409 of a change that conflicts with the model's state: an answer
# about the model's state, not a refusal of the input.
positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx",
]

[phases.stateful]
max-steps = 8
# Only the links the document declares: inferred ones guess values (e.g. a version number
# as an ETag) that no client is told to send.
inference.algorithms = []
""")

_DATA_DIR = Path(tempfile.mkdtemp(prefix="modelledger-schemathesis-"))
# No rate limits: one principal sends thousands of requests a minute here (429 is documented
# on every /api route; tests/api/test_limits_rate.py tests the limits).
# One upstream host is allowed, so that a valid upstream can be accepted (``_upstream_host``).
UPSTREAM_HOST = "upstream.test"
_CONTAINER = build(load_settings(
    {}, data_dir=_DATA_DIR, jwt_secret=SECRET, max_upload_bytes=4096,
    rate_limit_per_minute=0, rate_limit_ingest_per_minute=0, upstream_hosts=UPSTREAM_HOST,
))
_APP = create_app(_CONTAINER)
complete_openapi(_APP.openapi_schema)  # again (a no-op) once api/app.py does it


def _authorization(subject: str, *scopes: str) -> str:
    return bearer(subject, *scopes)["Authorization"]


def fuzzed(authorization: Callable[[], str]) -> BaseSchema:
    """The app's schema, every request sent with the ``Authorization`` header given.

    An auth provider, so that schemathesis knows the credentials are valid (it probes
    them by leaving them out and by spoiling them) and does not generate its own.
    """
    loaded = schemathesis.openapi.from_asgi("/schema/openapi.json", _APP, config=CONFIG)

    @loaded.auth(refresh_interval=None)
    class _Bearer:
        def get(self, case: Any, context: Any) -> str:
            del case, context
            return authorization()

        def set(self, case: Any, data: str, context: Any) -> None:
            del context
            case.headers = {**(case.headers or {}), "Authorization": data}

    return loaded


_EVERY_SCOPE = _authorization(SUBJECT, *EVERY_SCOPE)
schema = fuzzed(lambda: _EVERY_SCOPE)

# The caller's own models: a random id only ever finds a 404, so three cases in four of a
# per-model route are pointed at one of these (chosen from the generated id, deterministically).
_CALLER = Actor(user_id_of(SUBJECT), "st")
_MODEL_IDS = [_CONTAINER.models.register(_CALLER, name=f"st-{i}")["id"] for i in range(3)]
_CONTAINER.models.update(_CALLER, _MODEL_IDS[0], description="a second event for the history")
_OWN_MODELS = [str(model_id) for model_id in _MODEL_IDS]


def _issued(operation_id: str, **parameters: Any) -> str:
    operation = schema.find_operation_by_id(operation_id)  # type: ignore[attr-defined]
    response = operation.Case(**parameters).call(headers={"Authorization": _EVERY_SCOPE})
    assert response.status_code == 200, response.text
    cursor = response.json()["next_cursor"]
    assert isinstance(cursor, str), response.text
    return cursor


SORTS = ("created_at", "-created_at", "updated_at", "-updated_at", "name", "-name")
# Cursors the API issued: a cursor is valid only as given back, which a schema cannot state.
_LIST_CURSORS = {sort: _issued("listModels", query={"sort": sort, "limit": 1}) for sort in SORTS}
_HISTORY_CURSOR = _issued(
    "getModelHistory", path_parameters={"model_id": _OWN_MODELS[0]}, query={"limit": 1}
)


@pytest.fixture(scope="module", autouse=True)
def _close_container() -> Iterator[None]:
    # The projection worker runs as in `serve`: without it, usage recorded early in the run
    # would look stalled to /health/ready (a 503) once the run lasts past the watchdog's limit.
    stop = threading.Event()
    threads = _CONTAINER.start_worker(stop)
    yield
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    _CONTAINER.close()
    shutil.rmtree(_DATA_DIR, ignore_errors=True)


# Rules between values, which OpenAPI cannot state -----------------------------------------
# A request the schema allows but that breaks one of these gets a 400 (or 422) naming the
# rule, so the fuzzer's valid cases are kept to them; invalid cases are sent as generated.
# Each rule is written in the description of the parameter or field it concerns.

# A span of each window's buckets that stays below its maximum (``windows.MAX_BUCKETS``)
# wherever the range starts and whatever the zone.
_SPAN = {
    "hour": timedelta(days=30),
    "day": timedelta(days=700),
    "week": timedelta(weeks=250),
    "month": timedelta(days=3_400),
}
_LAST_YEAR = 8999  # from and to: years 1970 to 8999 as written


def _positive(case: Any, location: ParameterLocation) -> bool:
    component = case.meta.components.get(location) if case.meta is not None else None
    return component is not None and component.mode.is_positive


def _moment(value: Any) -> datetime | None:
    """``value`` read as the server reads it (msgspec takes more spellings than Python)."""
    try:
        return msgspec.convert(value, datetime) if isinstance(value, str) else None
    except msgspec.ValidationError:
        return None


def _usage_range(query: dict[str, Any]) -> None:
    """``from`` not after ``to`` (default: now), and no more buckets between them than served."""
    span = _SPAN[query.get("window", "day")]
    start, end = _moment(query.get("from")), _moment(query.get("to"))
    if start is None:
        return
    if end is None:  # to is now
        now = datetime.now(UTC)
        if not now - span <= start <= now:
            query["from"] = (now - span / 2).isoformat()
        return
    if start > end:
        start, end = end, start
    if end - start > span:
        if (start + span).year <= _LAST_YEAR:
            end = start + span
        else:
            start = end - span
    query["from"], query["to"] = start.isoformat(), end.isoformat()


def _in_the_past(report: Any) -> None:
    """A prediction request cannot be reported before it happened, nor for a version the
    model does not have (the caller's models have at most version 1 here)."""
    if not isinstance(report, dict):
        return
    if report.get("model_version") is not None:
        report["model_version"] = 1
    moment = _moment(report.get("occurred_at"))
    if moment is not None and moment.utcoffset() is not None and moment > datetime.now(UTC):
        report["occurred_at"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()


def _issued_cursor(query: dict[str, Any], operation: str) -> None:
    if "cursor" in query:
        query["cursor"] = (
            _LIST_CURSORS[query.get("sort", "created_at")] if operation == "listModels"
            else _HISTORY_CURSOR
        )


def _issued_versions_cursor(query: dict[str, Any], _: str) -> None:
    if "cursor" in query:
        query["cursor"] = presenters.encode_cursor("versions", 1)  # as the API issues it


def _compare_range(query: dict[str, Any], _: str) -> None:
    """``from`` not after ``to`` (default: now), at most 366 days apart."""
    start, end = _moment(query.get("from")), _moment(query.get("to"))
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=1)
    if start > end:
        start, end = end, start
    if end - start > timedelta(days=300):
        start = end - timedelta(days=300)
    query["from"], query["to"] = start.isoformat(), end.isoformat()


def _as_of_or_version(query: dict[str, Any], _: str) -> None:
    if query.get("version") is not None:
        query.pop("as_of", None)


QUERY_RULES: dict[str, Callable[[dict[str, Any], str], None]] = {
    "listModels": _issued_cursor,
    "getModelHistory": _issued_cursor,
    "getModel": _as_of_or_version,
    "getModelUsage": lambda query, _: _usage_range(query),
    "getUsageSummary": lambda query, _: _usage_range(query),
    "listModelVersions": _issued_versions_cursor,
    "compareModelVersions": _compare_range,
}
_AUTHORITY = re.compile(r"^(https?://)[^/]+")


def _serveable(body: Any) -> None:
    """An upstream names a host the operator listed; an artifact generated as random bytes
    is no ONNX model, so it is not registered as one (both rules are in the descriptions);
    ``serving`` names versions the model has (tests/api/test_versions_api.py)."""
    if not isinstance(body, dict):
        return
    body.pop("serving", None)
    upstream = body.get("upstream")
    if isinstance(upstream, dict) and isinstance(upstream.get("url"), str):
        url = _AUTHORITY.sub(rf"\g<1>{UPSTREAM_HOST}", upstream["url"])
        upstream["url"] = url if len(url) <= URL_MAX else f"http://{UPSTREAM_HOST}"
    framework = body.get("framework")
    if "file" in body and isinstance(framework, str) and framework.strip().casefold() == "onnx":
        body["framework"] = "not-onnx"


def _own_models(body: Any) -> None:
    """Most keys name the caller's models (a random id only ever finds a 404)."""
    models = body.get("models") if isinstance(body, dict) else None
    if isinstance(models, list):
        body["models"] = [
            _OWN_MODELS[zlib.crc32(str(m).encode()) % 3] if zlib.crc32(str(m).encode()) % 4
            else m for m in models
        ]


# (A batch's records are checked one by one: one from the future is rejected in a 200.)
BODY_RULES: dict[str, Callable[[Any], None]] = {
    "recordUsage": _in_the_past,
    "registerModel": _serveable,
    "updateModel": _serveable,
    "createApiKey": _own_models,
}


def keep_to_the_rules(case: Any, *, own_models: bool = True) -> None:
    """Bring the valid parts of ``case`` within the rules between values (see above);
    ``own_models``: point most per-model cases at the caller's models."""
    operation = case.operation.definition.raw.get("operationId")
    path = case.path_parameters
    if own_models and path and "model_id" in path and _positive(case, ParameterLocation.PATH):
        pick = zlib.crc32(str(path["model_id"]).encode()) % 4
        if pick:
            path["model_id"] = _OWN_MODELS[pick - 1]
    query_rule = QUERY_RULES.get(operation)
    if query_rule and isinstance(case.query, dict) and _positive(case, ParameterLocation.QUERY):
        query_rule(case.query, operation)
    body_rule = BODY_RULES.get(operation)
    if body_rule and _positive(case, ParameterLocation.BODY):
        body_rule(case.body)


def excluded_checks(case: Any) -> list[Any]:
    """The checks that cannot judge ``case``. Two kinds of generated cases are not what
    schemathesis takes them for:

    - a "valid" case with an invalid part (the coverage phase keeps, say, a bad If-Match
      while it varies the body) is not valid data;
    - an "invalid" form whose values are text like any other (``1.5`` generated for a string
      field is sent as the string "1.5", which is valid: schemathesis allows for that in
      queries, not in forms) is not invalid data.
    """
    if case.meta is None:
        return []
    if case.meta.generation.mode.is_positive:
        parts = case.meta.components.values()
        return [positive_data_acceptance] if any(p.mode.is_negative for p in parts) else []
    if not (case.media_type or "").startswith("multipart/") or not isinstance(case.body, dict):
        return []
    sent = {key: _as_text(value) for key, value in case.body.items()}
    body = case.operation.get_body_for_media_type(case.media_type)
    if body is not None and jsonschema_rs.validator_for(body.raw_schema).is_valid(sent):
        return [negative_data_rejection]
    return []


def _as_text(value: Any) -> Any:
    """A form value as sent: text (JSON's spelling of ``true`` or ``null``), or a file."""
    if type(value) is str:  # a file's content is generated as a subclass of str
        return value
    if isinstance(value, bool | dict | list) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    return "a file"


def call_and_validate(case: Any) -> None:
    keep_to_the_rules(case)
    case.call_and_validate(excluded_checks=excluded_checks(case))


# The tests ----------------------------------------------------------------------------------


@pytest.mark.slow
@schema.parametrize()
@settings(deadline=None)
def test_every_operation_conforms_to_the_schema(case: Any) -> None:
    call_and_validate(case)


# The operations a scope opens, each fuzzed with a token holding that scope alone.
def _scoped(scope: str, *operation_ids: str) -> BaseSchema:
    token = _authorization(SUBJECT, scope)
    return fuzzed(lambda: token).include(operation_id=list(operation_ids))


@pytest.mark.slow
@_scoped("usage:write", "recordUsage", "recordUsageBatch").parametrize()
@settings(deadline=None)
def test_usage_is_recorded_with_the_usage_write_scope_alone(case: Any) -> None:
    call_and_validate(case)


@pytest.mark.slow
@_scoped("admin", "getProjections", "getJobRuns").parametrize()
@settings(deadline=None)
def test_operations_endpoints_answer_the_admin_scope_alone(case: Any) -> None:
    call_and_validate(case)


@pytest.mark.slow
@_scoped("models", "registerModel", "updateModel", "recordUsage").parametrize()
@settings(deadline=None)
def test_models_are_managed_with_the_models_scope_alone(case: Any) -> None:
    call_and_validate(case)


# Each scenario of the stateful phase is a new user's: a scenario replayed (to shrink a
# failure) must meet the same answers, which names taken by an earlier scenario would change.
_SCENARIO = {"authorization": _EVERY_SCOPE}
_stateful = fuzzed(lambda: _SCENARIO["authorization"])


class _Workflow(_stateful.as_state_machine()):  # type: ignore[misc]
    """Sequences along the links: register, read, update (If-Match), record usage, delete."""

    def setup(self) -> None:
        _SCENARIO["authorization"] = _authorization(f"{SUBJECT}-{uuid.uuid4()}", *EVERY_SCOPE)

    def before_call(self, case: Any) -> None:
        keep_to_the_rules(case, own_models=False)

    def validate_response(self, response: Any, case: Any, *_: Any, **kwargs: Any) -> None:
        case.validate_response(
            response, excluded_checks=excluded_checks(case), transport_kwargs=kwargs or None,
            recorder=self.recorder,
        )


TestWorkflowsFollowingTheLinks = pytest.mark.slow(_Workflow.TestCase)
TestWorkflowsFollowingTheLinks.settings = settings(
    max_examples=100, stateful_step_count=8, deadline=None, derandomize=True, database=None,
)
