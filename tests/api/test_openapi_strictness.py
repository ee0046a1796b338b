"""The server refuses what its OpenAPI document forbids, and accepts what it allows.

Each test pins one disagreement schemathesis found between the two (tests/api/
test_schemathesis.py finds them all; these name them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.api.conftest import Headers, assert_problem, usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


class TestJsonBodiesAreReadStrictly:
    """Litestar converts bodies in lax mode; the API reads them as its schema states."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [("success", 0), ("success", "true"), ("response_time_ms", "12.5"),
         ("input_bytes", "100"), ("occurred_at", 1_700_000_000),
         ("occurred_at", "2026-01-01T00:00:00")],  # a time without its offset
    )
    def test_a_value_of_another_type_answers_400_naming_the_field(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]],
        field: str, value: Any,
    ) -> None:
        model = register(alice)
        body = usage("r1", **{field: value})
        response = client.post(f"/api/models/{model['id']}/usage", json=body, headers=alice)
        assert_problem(response, 400, field)

    def test_a_batch_with_a_number_for_a_boolean_answers_400_naming_the_record(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        records = [{**usage("r1"), "model_id": model["id"]},
                   {**usage("r2", success=0), "model_id": model["id"]}]
        response = client.post("/api/usage/batch", json={"records": records}, headers=alice)
        assert_problem(response, 400, "records[1].success")

    def test_an_update_with_a_number_for_a_name_answers_400(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        response = client.put(f"/api/models/{model['id']}", json={"name": 5}, headers=alice)
        assert_problem(response, 400, "name")

    def test_a_whole_number_written_with_a_fraction_is_an_integer(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        """JSON Schema's ``integer`` is any number with a zero fraction."""
        model = register(alice)
        body = usage("r1", input_bytes=100.0, status_code=200.0)
        response = client.post(f"/api/models/{model['id']}/usage", json=body, headers=alice)
        assert response.status_code == 201, response.text


class TestStatedRulesAnswer422NamingTheField:
    @pytest.mark.parametrize(
        ("field", "value"),
        [("request_id", ""), ("input_bytes", -1), ("response_time_ms", -0.5),
         ("status_code", 99), ("ip", "not an address")],
    )
    def test_a_recorded_request(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]],
        field: str, value: Any,
    ) -> None:
        model = register(alice)
        body = {**usage("r1"), field: value}
        response = client.post(f"/api/models/{model['id']}/usage", json=body, headers=alice)
        assert_problem(response, 422, field)

    def test_a_name_longer_than_allowed_even_when_the_rest_is_white_space(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        """The domain counts the name stripped; the schema counts what was sent."""
        name = "a" + " " * 200
        assert_problem(client.post("/api/models", json={"name": name}, headers=alice), 422, "name")
        form = client.post("/api/models", files={"name": (None, name)}, headers=alice)
        assert_problem(form, 422, "name")

    def test_a_blank_name_in_a_form(self, client: TestClient[Any], alice: Headers) -> None:
        response = client.post("/api/models", files={"name": (None, "\x1e ")}, headers=alice)
        assert_problem(response, 422, "name")


class TestUsageWindows:
    def test_from_equal_to_to_is_an_empty_window(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        moment = "2026-01-01T00:00:00Z"
        query = {"from": moment, "to": moment}
        series = client.get(f"/api/models/{model['id']}/usage", params=query, headers=alice)
        assert series.status_code == 200, series.text
        assert series.json()["buckets"] == []
        summary = client.get("/api/usage/summary", params=query, headers=alice)
        assert summary.status_code == 200, summary.text
        assert summary.json()["buckets"] == []

    def test_an_empty_window_of_another_users_model_is_not_found(
        self, client: TestClient[Any], alice: Headers, bob: Headers,
        register: Callable[..., dict[str, Any]],
    ) -> None:
        model = register(alice)
        query = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        response = client.get(f"/api/models/{model['id']}/usage", params=query, headers=bob)
        assert_problem(response, 404)

    def test_from_after_to_answers_400_naming_from(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        query = {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        assert_problem(client.get("/api/usage/summary", params=query, headers=alice), 400, "from")

    @pytest.mark.parametrize(
        "value", ["100000", "0.5", "2026-01-01T00:00:00", "1969-12-31T00:00:00Z"]
    )
    def test_a_number_a_time_without_offset_or_a_year_not_served_is_no_time(
        self, client: TestClient[Any], alice: Headers, value: str
    ) -> None:
        response = client.get("/api/usage/summary", params={"to": value}, headers=alice)
        assert_problem(response, 400, "to")

    def test_a_zone_whose_offset_is_not_whole_hours_answers_400_naming_tz(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        response = client.get("/api/usage/summary", params={"tz": "Asia/Kolkata"}, headers=alice)
        assert_problem(response, 400, "tz")


class TestModelReads:
    def test_a_number_is_no_time_for_as_of(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        response = client.get(f"/api/models/{model['id']}", params={"as_of": "100000"},
                              headers=alice)
        assert_problem(response, 400, "as_of")

    def test_a_version_beyond_a_bigint_answers_400(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice)
        response = client.get(f"/api/models/{model['id']}", params={"version": str(2**63)},
                              headers=alice)
        assert_problem(response, 400, "version")

    @pytest.mark.parametrize("tag", ['"1', '1"', '""', "W/1"])
    def test_if_match_takes_only_an_etag_of_this_api(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]],
        tag: str,
    ) -> None:
        model = register(alice)
        response = client.put(f"/api/models/{model['id']}", json={"description": "d"},
                              headers={**alice, "If-Match": tag})
        assert_problem(response, 400, "If-Match")

    @pytest.mark.parametrize("tag", ['"1"', 'W/"1"', "*"])
    def test_if_match_with_the_current_etag_updates(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]],
        tag: str,
    ) -> None:
        model = register(alice)
        response = client.put(f"/api/models/{model['id']}", json={"description": "d"},
                              headers={**alice, "If-Match": tag})
        assert response.status_code == 200, response.text


class TestQueryParameters:
    """No parameter takes several values, and a misspelt one is not silently ignored."""

    def test_an_unknown_query_parameter_answers_400_naming_it(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        assert_problem(client.get("/api/models?limt=5", headers=alice), 400, "limt")
        assert_problem(client.get("/health/live?probe=1"), 400, "probe")

    def test_a_repeated_query_parameter_answers_400_naming_it(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        response = client.get("/api/models?status=active&status=deleted", headers=alice)
        assert_problem(response, 400, "status")

    def test_the_documented_parameters_are_accepted(
        self, client: TestClient[Any], alice: Headers
    ) -> None:
        response = client.get("/api/models?limit=5&sort=-name&include_deleted=true", headers=alice)
        assert response.status_code == 200, response.text
