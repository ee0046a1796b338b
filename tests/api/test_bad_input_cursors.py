"""A crafted list or history cursor is a 400 naming ``cursor``, never a 500, on both backends."""

from __future__ import annotations

import base64
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.api.conftest import assert_problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from tests.api.conftest import Headers

ID = str(uuid.uuid4())


def crafted(parts: Any) -> str:
    """What a client can send: base64url of any JSON, the way the server encodes its own."""
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


LIST_CURSORS = {
    # sort, cursor
    "a number for a name": ("name", crafted(["name", 5, ID])),
    "a huge number for a name": ("-name", crafted(["-name", 10**30, ID])),
    "a list for a name": ("name", crafted(["name", ["a"], ID])),
    "an object for a name": ("name", crafted(["name", {"a": 1}, ID])),
    "null for a name": ("name", crafted(["name", None, ID])),
    "true for a name": ("name", crafted(["name", True, ID])),
    "a NUL in a name": ("name", crafted(["name", "a\u0000b", ID])),
    "a name longer than any name": ("name", crafted(["name", "n" * 201, ID])),
    "a number for the id": ("name", crafted(["name", "a", 12])),
    "a list for the id": ("name", crafted(["name", "a", [ID]])),
    "not a uuid": ("name", crafted(["name", "a", "not-a-uuid"])),
    "a uuid spelt as a urn": ("name", crafted(["name", "a", f"urn:uuid:{ID}"])),
    "a number for a time": ("created_at", crafted(["created_at", 5, ID])),
    "a list for a time": ("updated_at", crafted(["updated_at", ["2026-11-02"], ID])),
    "a time without an offset": ("created_at", crafted(["created_at", "2026-11-02T08:00:00", ID])),
    "a time before year 1 in UTC": (
        "created_at", crafted(["created_at", "0001-01-01T00:00:00+14:00", ID])
    ),
    "a time after year 9999 in UTC": (
        "-updated_at", crafted(["-updated_at", "9999-12-31T23:59:59-14:00", ID])
    ),
    "a string that is no time": ("created_at", crafted(["created_at", "yesterday", ID])),
    "another sort's cursor": ("name", crafted(["created_at", "2026-11-02 08:00:00+00:00", ID])),
    "too few parts": ("name", crafted(["name", "a"])),
    "too many parts": ("name", crafted(["name", "a", ID, 1])),
    "an empty list": ("name", crafted([])),
    "a number first": ("name", crafted([1, "a", ID])),
    "deeply nested lists": ("name", crafted(json.loads("[" * 150 + "]" * 150))),
    "an object": ("name", crafted({"sort": "name"})),
    "a JSON string": ("name", crafted("name")),
    "not JSON": ("name", base64.urlsafe_b64encode(b"\xff\xfe[").decode()),
    "not base64": ("name", "!!!!"),
    "a lone base64 character": ("name", "A"),
}

HISTORY_CURSORS = {
    "a huge version": crafted(["history", 10**30]),
    "a version past a 64-bit integer": crafted(["history", 2**63]),
    "a negative version": crafted(["history", -1]),
    "true for a version": crafted(["history", True]),
    "a fractional version": crafted(["history", 1.5]),
    "a string version": crafted(["history", "1"]),
    "a list cursor": crafted(["name", "a", ID]),
    "not base64": "%%%%",
}


class TestCraftedCursors:
    @pytest.mark.parametrize(("sort", "cursor"), LIST_CURSORS.values(), ids=LIST_CURSORS.keys())
    def test_crafted_list_cursor_answers_400_naming_cursor(
        self,
        client: TestClient[Any],
        alice: Headers,
        register: Callable[..., dict[str, Any]],
        sort: str,
        cursor: str,
    ) -> None:
        register(alice, "a1")
        response = client.get(
            "/api/models", params={"sort": sort, "cursor": cursor}, headers=alice
        )
        assert_problem(response, 400, "cursor")

    @pytest.mark.parametrize("cursor", HISTORY_CURSORS.values(), ids=HISTORY_CURSORS.keys())
    def test_crafted_history_cursor_answers_400_naming_cursor(
        self,
        client: TestClient[Any],
        alice: Headers,
        register: Callable[..., dict[str, Any]],
        cursor: str,
    ) -> None:
        model = register(alice, "a1")
        response = client.get(
            f"/api/models/{model['id']}/history", params={"cursor": cursor}, headers=alice
        )
        assert_problem(response, 400, "cursor")

    @pytest.mark.parametrize(
        "sort", ["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"]
    )
    def test_issued_cursors_still_page_through_every_model_once(
        self,
        client: TestClient[Any],
        alice: Headers,
        register: Callable[..., dict[str, Any]],
        sort: str,
    ) -> None:
        ids = {register(alice, f"m{i}")["id"] for i in range(5)}
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 2, "sort": sort}
        while True:
            page = client.get("/api/models", params=params, headers=alice).json()
            seen += [m["id"] for m in page["items"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert sorted(seen) == sorted(ids)
        assert len(seen) == len(ids)

    def test_issued_history_cursor_pages_through_every_version_once(
        self, client: TestClient[Any], alice: Headers, register: Callable[..., dict[str, Any]]
    ) -> None:
        model = register(alice, "h")
        for i in range(4):
            client.put(f"/api/models/{model['id']}", json={"name": f"h{i}"}, headers=alice)
        versions: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = client.get(
                f"/api/models/{model['id']}/history", params=params, headers=alice
            ).json()
            versions += [e["version"] for e in page["items"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert versions == [1, 2, 3, 4, 5]
