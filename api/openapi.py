"""What Litestar cannot generate into the OpenAPI document: links, and bodies as decoded.

Links tell a client (and a fuzzer's stateful phase) how to go from one answer to the next: a
registered model's ``201`` leads to every per-model route, a model's ``ETag`` to a conditional
update, a page's ``next_cursor`` to the next page. Litestar has no place for them on a
handler, so they are added to the generated document by operation id.

The JSON request bodies are decoded by msgspec (``api.schemas.StrictBody``), so msgspec's own
JSON Schema of them is what the server accepts; Litestar's leaves out ``additionalProperties``
(``forbid_unknown_fields``) and every ``extra_json_schema`` (the formats of a field). And an
optional text parameter is documented as a string or ``null``, which a query or a header
cannot carry: the text "null" is read as that text, so left out is how a client gives no
value. (A number's, a time's or a choice's "null" is read as no value, as documented.)

``check_query`` holds requests to the document's query parameters.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.enums import ParamType
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Parameter,
    Schema,
)

from api.errors import InvalidParameterError
from api.schemas import REQUEST_BODIES

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.openapi.spec import OpenAPI, Operation

MAX_NAME_SHOWN = 100  # characters of an unknown parameter's name quoted back

_THE_MODEL = {"path.model_id": "$response.body#/id"}
_SAME_MODEL = {"path.model_id": "$request.path.model_id"}

# (operation id, status) -> {link name: (target operation id, parameters, description)}
LINKS: dict[tuple[str, str], dict[str, tuple[str, dict[str, str], str]]] = {
    ("registerModel", "201"): {
        "GetModel": ("getModel", _THE_MODEL, "The model just registered"),
        "UpdateModel": (
            "updateModel", {**_THE_MODEL, "header.If-Match": "$response.header.ETag"},
            "Change it, on condition that nobody changed it since",
        ),
        "DeleteModel": ("deleteModel", _THE_MODEL, "Delete it"),
        "GetModelHistory": ("getModelHistory", _THE_MODEL, "Its audit trail"),
        "GetModelUsage": ("getModelUsage", _THE_MODEL, "Its usage statistics"),
        "RecordUsage": ("recordUsage", _THE_MODEL, "Record a prediction request made to it"),
    },
    ("getModel", "200"): {
        "UpdateModel": (
            "updateModel", {**_THE_MODEL, "header.If-Match": "$response.header.ETag"},
            "Change the model as read, on condition that nobody changed it since",
        ),
        "DeleteModel": ("deleteModel", _THE_MODEL, "Delete it"),
    },
    ("updateModel", "200"): {
        "GetModel": ("getModel", _THE_MODEL, "The model as changed"),
        "UpdateModel": (
            "updateModel", {**_THE_MODEL, "header.If-Match": "$response.header.ETag"},
            "Change it again",
        ),
        "GetModelHistory": ("getModelHistory", _THE_MODEL, "Its audit trail, with the change"),
    },
    ("deleteModel", "204"): {
        "GetModel": ("getModel", _SAME_MODEL, "Still readable: deletion is soft"),
        "GetModelHistory": ("getModelHistory", _SAME_MODEL, "The trail ends with the deletion"),
    },
    ("recordUsage", "201"): {
        "GetModelUsage": ("getModelUsage", _SAME_MODEL, "The usage, with the request counted"),
    },
    ("createApiKey", "201"): {
        "RevokeApiKey": ("revokeApiKey", {"path.key_id": "$response.body#/id"}, "Revoke it"),
    },
    ("getModelHistory", "200"): {
        "NextPage": (
            "getModelHistory",
            {**_SAME_MODEL, "query.cursor": "$response.body#/next_cursor"},
            "The next page (when next_cursor is not null)",
        ),
    },
}


def complete_openapi(openapi: OpenAPI) -> OpenAPI:
    """``openapi`` with the request bodies as msgspec decodes them, and ``LINKS``.

    Changes ``openapi`` in place (call it on ``app.openapi_schema``); calling it again
    changes nothing more.
    """
    document_request_bodies(openapi)
    for operation in _operations(openapi).values():
        for parameter in operation.parameters or ():
            if isinstance(parameter, Parameter) and isinstance(parameter.schema, Schema):
                parameter.schema = without_null(parameter.schema, only=OpenAPIType.STRING)
        document_rate_limit(operation)
    link_model_routes(openapi)
    return openapi


def document_rate_limit(operation: Operation) -> None:
    """A 429 on every operation behind a token: the rate limits count each principal's
    requests on every ``/api`` route (``api.rate_limit``), and health, metrics and the
    schema are behind none. Shaped like the operation's 401 (a problem)."""
    responses = operation.responses or {}
    unauthorized = responses.get("401")
    if not operation.security or not isinstance(unauthorized, OpenAPIResponse):
        return
    responses["429"] = dataclasses.replace(
        unauthorized,
        description="Too many requests from this caller this minute (see Retry-After and "
        "the RateLimit-* headers)",
        headers={"Retry-After": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.INTEGER, minimum=0), required=True,
            description="Seconds until the caller's budget is renewed",
        )},
    )


def without_null(schema: Schema, *, only: OpenAPIType) -> Schema:
    """``schema`` without the ``null`` of ``T | None`` (as Litestar writes it) if ``T`` is
    of type ``only``."""
    rest = [
        s for s in schema.one_of or ()
        if not (isinstance(s, Schema) and s.type is OpenAPIType.NULL)
    ]
    if (
        schema.one_of and len(rest) == 1 and isinstance(rest[0], Schema)
        and rest[0].type is only
    ):
        # The constraints (lengths, pattern) are written beside the oneOf, the type inside it.
        inner = {f.name: getattr(rest[0], f.name) for f in dataclasses.fields(Schema)}
        given = {name: value for name, value in inner.items() if value is not None}
        return dataclasses.replace(schema, one_of=None, **given)
    return schema


def document_request_bodies(openapi: OpenAPI) -> None:
    """Replace the component schemas of ``REQUEST_BODIES`` (and the Structs they hold)."""
    _, components = msgspec.json.schema_components(
        REQUEST_BODIES, ref_template="#/components/schemas/{name}"
    )
    openapi.components = openapi.components or Components()
    schemas: dict[str, Any] = openapi.components.schemas or {}
    schemas.update(_pattern_over_format(components))  # plain dicts: Litestar writes them as given
    openapi.components.schemas = schemas


def _pattern_over_format(schema: Any) -> Any:
    """``schema`` with a pattern's field rid of its ``format``: a time's pattern states the
    spellings msgspec reads, a few more than the ``date-time`` format (a space for the T)."""
    if isinstance(schema, list):
        return [_pattern_over_format(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kept = {key: _pattern_over_format(value) for key, value in schema.items()}
    if "pattern" in kept and "format" in kept:
        del kept["format"]
    return kept


def link_model_routes(openapi: OpenAPI) -> None:
    """Add ``LINKS`` to ``openapi``'s responses."""
    operations = _operations(openapi)
    for (source, status), links in LINKS.items():
        responses = operations[source].responses or {}
        response = responses[status]
        response.links = {  # type: ignore[union-attr]
            name: Link(operation_id=target, parameters=dict(parameters), description=description)
            for name, (target, parameters, description) in links.items()
        }


def _operations(openapi: OpenAPI) -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation: Operation | None = getattr(item, method, None)
            if operation is not None and operation.operation_id:
                found[operation.operation_id] = operation
    return found


_DOCUMENTED = "documented_query_parameters"  # the app state's key of them, per operation id


def check_query(request: Request[Any, Any, Any]) -> None:
    """Refuse a query parameter its operation does not document, or one given twice (400).

    No parameter of this API takes several values, so a repeated one would be read as one
    of them, unseen; an unknown one (``limt=5``) would be ignored, unseen. Routes outside
    the document (the schema's own) are not checked.
    """
    operation_id = getattr(request.scope.get("route_handler"), "operation_id", None)
    if not isinstance(operation_id, str) or not request.query_params:
        return
    documented = _documented(request.app).get(operation_id)
    if documented is None:
        return
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        shown = name[:MAX_NAME_SHOWN]
        if name not in documented:
            raise InvalidParameterError(shown, "is not a query parameter of this operation")
        if name in seen:
            raise InvalidParameterError(shown, "is given more than once")
        seen.add(name)


def _documented(app: Litestar) -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] | None = app.state.get(_DOCUMENTED)
    if found is None:
        found = app.state[_DOCUMENTED] = {
            operation_id: frozenset(
                p.name for p in operation.parameters or ()
                if isinstance(p, Parameter) and p.param_in == ParamType.QUERY
            )
            for operation_id, operation in _operations(app.openapi_schema).items()
        }
    return found
