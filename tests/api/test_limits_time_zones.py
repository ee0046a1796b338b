"""A ``tz`` that is not a time zone is a 400 naming ``tz``, never a 500.

Names of tz database directories (``America``, ``Etc``) made ``ZoneInfo`` raise
``IsADirectoryError``, which the API answered with a 500 and a logged traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.api.conftest import assert_problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from tests.api.conftest import Headers

NOT_ZONES = [
    "America", "Etc", "America/", "Etc/", "../../etc/passwd", "/etc/passwd", "", " ",
    "America/Nowhere", "tzdata.zi", "x" * 64, "x" * 65, "Europe/Berlin\x00",
]
# The parsing happens before any query: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.mark.parametrize("tz", NOT_ZONES)
def test_a_series_with_a_name_that_is_not_a_zone_is_a_400_naming_tz(
    client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]], tz: str
) -> None:
    model = register(alice)

    response = client.get(f"/api/models/{model['id']}/usage", params={"tz": tz}, headers=alice)

    assert_problem(response, 400, "tz")


@pytest.mark.parametrize("tz", NOT_ZONES)
def test_a_summary_with_a_name_that_is_not_a_zone_is_a_400_naming_tz(
    client: TestClient[Any], alice: Headers, tz: str
) -> None:
    response = client.get("/api/usage/summary", params={"tz": tz}, headers=alice)

    assert_problem(response, 400, "tz")


@pytest.mark.parametrize("tz", ["America/New_York", "Etc/GMT-2", "UTC"])
def test_zones_in_those_directories_still_answer(
    client: TestClient[Any], alice: Headers, tz: str
) -> None:
    response = client.get("/api/usage/summary", params={"tz": tz}, headers=alice)

    assert response.status_code == 200, response.text
