"""The OpenAPI document states every rule the server holds a request to, and links the routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from services.usage import UsageRecord, UsageReport

if TYPE_CHECKING:
    from litestar.testing import TestClient

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def document(client: TestClient[Any]) -> dict[str, Any]:
    return dict(client.get("/schema/openapi.json").json())


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    operation = document["paths"][path][method]
    return next(p["schema"] for p in operation["parameters"] if p["name"] == name)


@sqlite_only
def test_request_bodies_refuse_fields_they_lack(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("UsageReport", "UsageRecord", "UsageReportBatch", "ModelUpdate"):
        assert schemas[name]["additionalProperties"] is False, name
    register = document["paths"]["/api/models"]["post"]["requestBody"]["content"]
    assert all(body["schema"]["additionalProperties"] is False for body in register.values())


@sqlite_only
def test_a_recorded_request_states_its_field_rules(document: dict[str, Any]) -> None:
    fields = document["components"]["schemas"]["UsageReport"]["properties"]
    assert (fields["request_id"]["minLength"], fields["request_id"]["maxLength"]) == (1, 200)
    for name in ("input_bytes", "output_bytes"):
        assert (fields[name]["minimum"], fields[name]["maximum"]) == (0, 2**53), name
    assert (fields["response_time_ms"]["minimum"], fields["response_time_ms"]["maximum"]) == (
        0, 86_400_000
    )
    status_code = fields["status_code"]["anyOf"][0]
    assert (status_code["minimum"], status_code["maximum"]) == (100, 599)
    ip = fields["ip"]["anyOf"][0]["anyOf"]
    assert {alternative["format"] for alternative in ip} == {"ipv4", "ipv6"}
    assert "pattern" in fields["occurred_at"]["anyOf"][0]


@sqlite_only
def test_model_names_and_frameworks_state_length_and_not_blank(document: dict[str, Any]) -> None:
    register = document["paths"]["/api/models"]["post"]["requestBody"]["content"]
    update = document["components"]["schemas"]["ModelUpdate"]["properties"]
    for fields in (body["schema"]["properties"] for body in register.values()):
        assert (fields["name"]["maxLength"], fields["framework"]["maxLength"]) == (200, 64)
        assert fields["description"]["maxLength"] == 5_000
        assert "pattern" in fields["name"]
        assert "pattern" in fields["framework"]
    assert update["name"]["anyOf"][0]["maxLength"] == 200


@sqlite_only
def test_query_parameters_state_their_rules(document: dict[str, Any]) -> None:
    cursor = _parameter(document, "/api/models", "get", "cursor")
    assert (cursor["pattern"], cursor["maxLength"]) == ("^[A-Za-z0-9_-]+$", 500)
    version = _parameter(document, "/api/models/{model_id}", "get", "version")
    assert (version["minimum"], version["maximum"]) == (1, 2**63 - 1)
    for name in ("from", "to"):
        moment = _parameter(document, "/api/usage/summary", "get", name)
        assert moment["type"] == "string"
        assert "pattern" in moment, name
    zones = _parameter(document, "/api/usage/summary", "get", "tz")["enum"]
    assert "Europe/Berlin" in zones
    assert "UTC" in zones
    assert "Asia/Kolkata" not in zones  # +05:30: hourly buckets cannot follow its days


@sqlite_only
def test_text_parameters_are_left_out_not_null(document: dict[str, Any]) -> None:
    """A query or a header carries "null" as that text: left out is how to give no value."""
    for path, method, name in (
        ("/api/models/{model_id}", "put", "If-Match"),
        ("/api/models", "get", "cursor"),
        ("/api/models", "get", "q"),
        ("/api/usage/summary", "get", "from"),
    ):
        schema = _parameter(document, path, method, name)
        assert schema["type"] == "string", (name, schema)
        assert "oneOf" not in schema, name


@sqlite_only
def test_every_documented_route_documents_its_400(document: dict[str, Any]) -> None:
    """An unknown or repeated query parameter is refused everywhere."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "400" in operation["responses"], (method, path)


@sqlite_only
def test_a_registered_model_links_to_every_per_model_route(document: dict[str, Any]) -> None:
    links = document["paths"]["/api/models"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"] for link in links.values()}
    assert targets == {
        "getModel", "updateModel", "deleteModel", "getModelHistory", "getModelUsage",
        "recordUsage",
    }
    assert {link["parameters"]["path.model_id"] for link in links.values()} == {
        "$response.body#/id"
    }
    assert links["UpdateModel"]["parameters"]["header.If-Match"] == "$response.header.ETag"


def test_a_batch_record_has_the_fields_of_a_recorded_request() -> None:
    """The batch's record states types only (a record that breaks a rule is rejected alone),
    but it must not drift from the single request's fields."""
    report = {f.name: f.required for f in msgspec.structs.fields(UsageReport)}
    record = {f.name: f.required for f in msgspec.structs.fields(UsageRecord)}
    assert record == {"model_id": True, **report}


@sqlite_only
def test_every_route_behind_a_token_documents_its_429(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            limited = "429" in operation["responses"]
            assert limited == bool(operation.get("security")), (method, path)
            if limited:
                assert "Retry-After" in operation["responses"]["429"]["headers"]


@sqlite_only
def test_an_upstream_states_the_url_and_model_rules_and_the_host_list(
    document: dict[str, Any],
) -> None:
    upstream = document["components"]["schemas"]["Upstream"]
    assert upstream["additionalProperties"] is False
    url, model = upstream["properties"]["url"], upstream["properties"]["model"]
    assert url["maxLength"] == 2_000
    assert url["pattern"].startswith("^https?://")
    assert "MODELLEDGER_UPSTREAM_HOSTS" in url["description"]
    assert model["pattern"] == "^[A-Za-z0-9._-]{1,200}$"
    register = document["paths"]["/api/models"]["post"]["requestBody"]["content"]
    json_upstream = register["application/json"]["schema"]["properties"]["upstream"]
    assert {"$ref": "#/components/schemas/Upstream"} in json_upstream["oneOf"]
    assert "upstream" not in register["multipart/form-data"]["schema"]["properties"]
    update = document["components"]["schemas"]["ModelUpdate"]["properties"]["upstream"]
    assert {"$ref": "#/components/schemas/Upstream"} in update["anyOf"]


@sqlite_only
def test_a_key_body_states_its_rules_and_the_routes_their_problems(
    document: dict[str, Any],
) -> None:
    create = document["components"]["schemas"]["ApiKeyCreate"]
    assert create["additionalProperties"] is False
    assert sorted(create["required"]) == ["models", "name"]
    models = create["properties"]["models"]["anyOf"][0]
    assert (models["minItems"], models["maxItems"]) == (1, 1_000)
    assert create["properties"]["name"]["maxLength"] == 200
    keys = document["paths"]["/api/keys"]
    assert {"401", "403", "404", "409", "422"} <= set(keys["post"]["responses"])
    revoke = document["paths"]["/api/keys/{key_id}"]["delete"]["responses"]
    assert "key" in revoke["404"]["description"]
